"""Serves the app with werkzeug on 127.0.0.1 (port 0: any free one) and
prints ``listening on HOST:PORT`` once it accepts connections; the tests
start it this way.

    python serve.py [PROFILE]
"""

import sys

from werkzeug.serving import make_server

from app import create_app

app = create_app(sys.argv[1] if len(sys.argv) > 1 else None)
server = make_server("127.0.0.1", 0, app, threaded=True)
print(f"listening on 127.0.0.1:{server.server_port}", flush=True)
server.serve_forever()
