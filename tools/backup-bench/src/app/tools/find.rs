//! `find SRC -printf '%s %T@\n'`: the floor for looking at every file (one
//! `lstat` each), the reference of the no-change backup. Its output is
//! discarded.

use anyhow::Result;

use super::{Lab, Plan};
use crate::app::model::Scenario;

/// The timed run; the same in every scenario it takes part in.
pub fn prepare(lab: &Lab, _sc: Scenario) -> Result<Option<Plan>> {
    let mut c = lab.cmd("find");
    c.arg(&lab.src).args(["-printf", "%s %T@\\n"]);
    Ok(Some(Plan::new(c, vec![lab.src.clone()])))
}
