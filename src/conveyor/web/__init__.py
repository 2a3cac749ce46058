"""conveyor's HTTP API (versioned, OpenAPI) and dashboard, as one ASGI app.

Install with `pip install 'conveyor[web]'`, then run `conveyor web myapp.tasks:app`,
or mount `create_app(app)` in your own Starlette/FastAPI application.
"""

from conveyor.web.app import WebSettings, create_app
from conveyor.web.auth import create_token

__all__ = ["WebSettings", "create_app", "create_token"]
