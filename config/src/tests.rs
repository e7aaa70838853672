use super::*;

fn write_profile(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(&p, body).unwrap();
    (dir, p)
}

fn err(body: &str) -> String {
    let (_d, p) = write_profile(body);
    Profile::load(&p).unwrap_err().to_string()
}

#[test]
fn defaults_and_relative_paths() {
    let (dir, p) = write_profile("name = \"X\"\nsource = \"src\"\ndestination = \"out/b\"\n");
    let prof = Profile::load(&p).unwrap();
    let base = dir.path().canonicalize().unwrap();
    assert_eq!(canonical_or_lexical(&prof.source), base.join("src"));
    assert_eq!(
        canonical_or_lexical(prof.destination.folder().unwrap()),
        base.join("out/b")
    );
    assert_eq!(prof.canonical_source, base.join("src"));
    assert_eq!(prof.max_backups, 10);
    assert!(prof.once_per_day && prof.default_excludes && prof.exclude_caches);
    assert!(!prof.respect_gitignore);
    assert!(prof.metadata_file.ends_with("src/backup_metadata.json"));
    assert!(prof.lock_file.ends_with("src/backup_in_progress.lock"));
    assert_eq!(prof.retention, None);
    prof.check_source().unwrap();
}

#[test]
fn tilde_is_home() {
    // HOME, or the user profile folder where HOME is unset (Windows).
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var_os("USERPROFILE"))
        .unwrap();
    let (_d, p) = write_profile("source = \"src\"\ndestination = \"~/b\"\n");
    let prof = Profile::load(&p).unwrap();
    assert_eq!(
        prof.destination,
        Destination::Folder(Path::new(&home).join("b"))
    );
}

#[test]
fn unknown_key_names_it_with_line() {
    let e = err("source = \"src\"\ndestination = \"b\"\nmax_backup = 3\n");
    assert!(e.contains("max_backup") && e.contains("line 3"), "{e}");
    assert!(e.contains("p.toml"), "{e}");
}

#[test]
fn wrong_type_names_the_key() {
    let e = err("source = \"src\"\ndestination = \"b\"\nmax_backups = \"ten\"\n");
    assert!(e.contains("max_backups") && e.contains("line 3"), "{e}");
}

#[test]
fn malformed_toml_has_line_and_column() {
    let e = err("source = \"src\"\ndestination = \n");
    assert!(e.contains("line 2") && e.contains("column"), "{e}");
}

#[test]
fn max_backups_zero_or_negative() {
    for v in ["0", "-1"] {
        let e = err(&format!(
            "source = \"src\"\ndestination = \"b\"\nmax_backups = {v}\n"
        ));
        assert!(
            e.contains("`max_backups`") && e.contains("at least 1"),
            "{e}"
        );
    }
}

#[test]
fn destination_equal_to_source() {
    let e = err("source = \"src\"\ndestination = \"src/.\"\n");
    assert!(
        e.contains("`destination`") && e.contains("is the source"),
        "{e}"
    );
}

#[test]
fn missing_destination_and_bad_retention() {
    let e = err("source = \"src\"\n");
    assert!(e.contains("`destination`"), "{e}");
    let e = err("source = \"src\"\ndestination = \"b\"\n[retention]\nkeep_hourly = 3\n");
    assert!(e.contains("keep_hourly"), "{e}");
    let e = err("source = \"src\"\ndestination = \"b\"\n[retention]\nkeep_daily = 0\n");
    assert!(e.contains("retention.keep_daily"), "{e}");
}

#[test]
fn retention_replaces_max_backups() {
    let (_d, p) = write_profile("source = \"src\"\ndestination = \"b\"\nmax_backups = 2\n[retention]\nkeep_daily = 7\nkeep_weekly = 4\n");
    let prof = Profile::load(&p).unwrap();
    let r = prof.retention.unwrap();
    assert_eq!(
        (r.keep_daily, r.keep_weekly, r.keep_last),
        (Some(7), Some(4), None)
    );
}

#[test]
fn missing_source_is_reported_by_check_source() {
    let (_d, p) = write_profile("source = \"nope\"\ndestination = \"b\"\n");
    let prof = Profile::load(&p).unwrap();
    let e = prof.check_source().unwrap_err().to_string();
    assert!(e.contains("`source`") && e.contains("nope"), "{e}");
}

#[test]
fn template_parses_after_substitution() {
    let (dir, p) = write_profile("");
    let text = TEMPLATE
        .replace("{name}", "Demo")
        .replace("{source}", "src")
        .replace("{destination}", "backups");
    std::fs::write(&p, text).unwrap();
    let prof = Profile::load(&p).unwrap();
    assert_eq!(prof.name, "Demo");
    drop(dir);
}

#[test]
fn s3_destination_is_parsed_with_defaults() {
    let (dir, p) = write_profile(
        "name = \"P\"\nsource = \"src\"\ndestination = \"s3://my-bucket/laptop/proj/\"\n",
    );
    let prof = Profile::load(&p).unwrap();
    let s3 = prof.destination.s3().cloned().unwrap();
    assert_eq!(s3.bucket, "my-bucket");
    assert_eq!(s3.prefix, "laptop/proj");
    assert_eq!(s3.endpoint, None);
    assert_eq!(s3.region, "us-east-1");
    assert_eq!(s3.access_key_env, "AWS_ACCESS_KEY_ID");
    assert_eq!(s3.secret_key_env, "AWS_SECRET_ACCESS_KEY");
    assert_eq!(prof.destination.to_string(), "s3://my-bucket/laptop/proj");
    drop(dir);
}

#[test]
fn s3_table_keys_are_read_and_checked() {
    let (dir, p) = write_profile(
        "source = \"src\"\ndestination = \"s3://b-1.x\"\n[s3]\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"eu-west-1\"\naccess_key_env = \"MY_KEY\"\nsecret_key_env = \"MY_SECRET\"\n",
    );
    let s3 = Profile::load(&p)
        .unwrap()
        .destination
        .s3()
        .cloned()
        .unwrap();
    assert_eq!(s3.prefix, "");
    assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(
        (s3.access_key_env.as_str(), s3.secret_key_env.as_str()),
        ("MY_KEY", "MY_SECRET")
    );
    assert_eq!(s3.url(), "s3://b-1.x");
    drop(dir);
    for (body, key) in [
        ("destination = \"s3://UPPER/x\"\n", "`destination`"),
        ("destination = \"s3://ab\"\n", "`destination`"),
        ("destination = \"s3://bucket/a/../b\"\n", "`destination`"),
        (
            "destination = \"s3://bucket/x\"\n[s3]\nendpoint = \"host:9000\"\n",
            "`s3.endpoint`",
        ),
        (
            "destination = \"s3://bucket/x\"\n[s3]\naccess_key_env = \"MY KEY\"\n",
            "`s3.access_key_env`",
        ),
        (
            "destination = \"s3://bucket/x\"\n[s3]\nsecret = \"x\"\n",
            "unknown field",
        ),
        ("destination = \"local\"\n[s3]\nregion = \"x\"\n", "`s3`"),
    ] {
        let e = err(&format!("source = \"src\"\n{body}"));
        assert!(e.contains(key), "{body}: {e}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Profile-shaped text: real keys, values of every type, broken quotes
    /// and tables, in any order.
    fn profile_text() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("name"),
            Just("source"),
            Just("destination"),
            Just("max_backups"),
            Just("exclude"),
            Just("once_per_day"),
            Just("lock_file"),
            Just("metadata_file"),
            Just("log_file"),
            Just("worker_threads"),
            Just("keep_daily"),
            Just("bogus"),
        ];
        let value = prop_oneof![
            "\"[a-zA-Z0-9_./ \\\\\\u{202e}\\u{0}-]{0,30}\"",
            "-?[0-9]{1,25}",
            Just("true".to_string()),
            Just("[\"*.log\", \"**\", \"\"]".to_string()),
            Just("\"s3://bucket/prefix\"".to_string()),
            Just("{".to_string()),
            Just("\"unterminated".to_string()),
        ];
        let line = prop_oneof![
            4 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
            1 => Just("[s3]".to_string()),
            1 => Just("endpoint = \"http://127.0.0.1:1\"".to_string()),
            1 => "[ -~]{0,40}",
        ];
        proptest::collection::vec(line, 0..12).prop_map(|lines| lines.join("\n"))
    }

    proptest! {
        /// Whatever the text, loading it never panics: it is a profile or
        /// an error that names the file.
        #[test]
        fn loading_any_profile_text_never_panics(text in profile_text()) {
            let (_d, p) = write_profile(&text);
            if let Err(e) = Profile::load(&p) {
                prop_assert!(e.to_string().contains("p.toml"), "{}", e);
            }
        }

        /// Any bytes at all (not even UTF-8): an error, never a panic.
        #[test]
        fn loading_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("p.toml");
            std::fs::write(&p, &bytes).unwrap();
            let _ = Profile::load(&p);
        }
    }
}

#[test]
fn tilde_without_a_home_is_none_and_a_plain_value_needs_none() {
    let base = Path::new("/p");
    assert_eq!(super::expand(base, "~/b", None), None);
    assert_eq!(super::expand(base, "~", None), None);
    assert_eq!(
        super::expand(base, "b/../c", None),
        Some(PathBuf::from("/p/c"))
    );
}

/// What a Windows profile says, and where it lands: drive letters, either
/// slash, UNC shares and `~` as the user profile folder.
#[cfg(windows)]
mod windows_paths {
    use std::path::{Path, PathBuf};

    use super::super::expand;

    const BASE: &str = r"C:\Users\ana\Desktop\InsightMiner";
    const HOME: &str = r"C:\Users\ana";

    fn at(value: &str) -> PathBuf {
        expand(Path::new(BASE), value, Some(Path::new(HOME))).unwrap()
    }

    #[test]
    fn drive_letters_and_either_slash_stand_alone() {
        assert_eq!(
            at(r"D:\Project Backups"),
            PathBuf::from(r"D:\Project Backups")
        );
        assert_eq!(
            at("D:/Project Backups/x"),
            PathBuf::from(r"D:\Project Backups\x")
        );
        assert_eq!(at(r"d:\a\..\b"), PathBuf::from(r"d:\b"));
    }

    #[test]
    fn relative_values_with_backslashes_join_the_profiles_folder() {
        assert_eq!(
            at(r"..\Project Backups"),
            PathBuf::from(r"C:\Users\ana\Desktop\Project Backups")
        );
        assert_eq!(at(r".\src"), PathBuf::from(format!(r"{BASE}\src")));
    }

    #[test]
    fn unc_shares_stand_alone() {
        assert_eq!(
            at(r"\\nas\backups\InsightMiner"),
            PathBuf::from(r"\\nas\backups\InsightMiner")
        );
        assert_eq!(at("//nas/backups/x"), PathBuf::from(r"\\nas\backups\x"));
    }

    #[test]
    fn tilde_is_the_user_profile_folder_with_either_slash() {
        assert_eq!(at("~"), PathBuf::from(HOME));
        assert_eq!(at(r"~\Backups"), PathBuf::from(r"C:\Users\ana\Backups"));
        assert_eq!(at("~/Backups"), PathBuf::from(r"C:\Users\ana\Backups"));
    }

    #[test]
    fn a_profile_with_windows_paths_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let dest = dir.path().join("Project Backups");
        let p = dir.path().join("p.toml");
        // The TOML literal string keeps backslashes as they are.
        std::fs::write(
            &p,
            format!("source = 'src'\ndestination = '{}'\n", dest.display()),
        )
        .unwrap();
        let prof = super::super::Profile::load(&p).unwrap();
        assert_eq!(prof.destination, super::super::Destination::Folder(dest));
    }
}

#[test]
fn device_names_and_the_device_namespace_are_no_windows_paths() {
    use super::windows_path_problem;
    assert_eq!(
        windows_path_problem(Path::new("/x/Project Backups/b")),
        None
    );
    let why = windows_path_problem(Path::new("/x/con/b")).unwrap_or_default();
    assert!(why.contains("reserves for a device (CON)"), "{why}");
    let why = windows_path_problem(Path::new("/x/aux.lock")).unwrap_or_default();
    assert!(why.contains("(AUX)"), "{why}");
    #[cfg(windows)]
    {
        let why = windows_path_problem(Path::new(r"\\.\pipe\b")).unwrap_or_default();
        assert!(why.contains("names a device"), "{why}");
        assert_eq!(windows_path_problem(Path::new(r"\\?\D:\Backups")), None);
        assert_eq!(windows_path_problem(Path::new(r"\\nas\share\b")), None);
    }
}
