// Back a project up when a Node server starts, without blocking it.
// once-per-day and the run lock live in backup-cli, so this is safe on
// every start.
//
// On Windows too: `detached` gives the child its own process group (a Ctrl+C
// in the server's console does not reach it) and `windowsHide` keeps it from
// opening a console window; pass the path of backup-cli.exe, or put it on
// PATH.
//
//   node examples/node_startup.js insightminer.toml [path/to/backup-cli]
const { spawn } = require("child_process");
const http = require("http");

function triggerStartupBackup(profile, exe = process.env.BACKUP_CLI || "backup-cli") {
  const child = spawn(exe, ["--profile", profile, "--quiet"], {
    detached: true,
    stdio: "ignore",
    windowsHide: true,
  });
  child.unref(); // the server never waits for it
  return child;
}

const profile = process.argv[2] || "insightminer.toml";
triggerStartupBackup(profile, process.argv[3]);
const server = http.createServer((req, res) => {
  res.end("ok\n");
  if (req.url === "/shutdown") server.close();
});
server.listen(0, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${server.address().port}`);
});
module.exports = { triggerStartupBackup };
