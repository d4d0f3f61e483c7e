"""`GET /docs`: Swagger UI over the project's own OpenAPI document, with nothing from a CDN.

The page, its script and its styles are served by this server from the `swagger-ui-bundle-v2`
package (Swagger UI 5, which reads OpenAPI 3.1), so the interactive docs work on a laptop
or a cluster without internet. "Try it out" sends requests to the server that served the
page; URLs are relative, so the page also works behind a path prefix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from predictor.rest.openapi import OPENAPI_PATH

PATH: Final = "/docs"
ASSETS_PATH: Final = f"{PATH}/assets"

_PAGE: Final = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>housing-predictor API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{OPENAPI_PATH.lstrip("/")}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      tryItOutEnabled: false,
    }});
  </script>
</body>
</html>
"""


def docs_routes(assets: Path | None = None) -> list[BaseRoute]:
    """`GET /docs` and the bundle's files under `/docs/assets/`."""
    page = _PAGE.encode()

    async def docs(request: Request) -> Response:
        return HTMLResponse(page, headers={"cache-control": "no-cache"})

    directory = Path(str(assets or swagger_ui_path))
    return [
        Route(PATH, docs, methods=["GET"], name="docs"),
        Mount(ASSETS_PATH, app=StaticFiles(directory=directory), name="docs_assets"),
    ]
