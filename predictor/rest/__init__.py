"""The REST front: the ASGI app uvicorn serves, its routes, bodies and answers.

`app` (the project's routes in front of kserve's), `kserve_app` (kserve's routes on an app
built here), `routes/` (legacy, V1, V2, health, docs), `bodies` (reading request bodies
within their bounds), `answers` (encoding answers), `openapi` (the OpenAPI document).
"""
