"""InsightMiner: a small Flask app that mines insights from text files.

This is the example project that `insightminer.toml` backs up.
"""
from flask import Flask, render_template

from analysis import summarize

app = Flask(__name__)


@app.route("/")
def index():
    return render_template("index.html", summary=summarize("data/notes.txt"))


class LocalServer:
    def __init__(self, app):
        self.app = app

    def start_server(self, port=8502):
        # backup-cli is started detached: once per day and the lock live in the tool.
        import subprocess
        subprocess.Popen(["backup-cli", "--profile", "insightminer.toml", "--quiet"])
        self.app.run(port=port)


if __name__ == "__main__":
    LocalServer(app).start_server()
