"""The web console at the control address: sign-in, the pipeline board, an app's page, the
actions a user's roles allow, and admin pages. Server-rendered HTML (Jinja2) with a little
hand-written JavaScript (live updates by server-sent events); every asset is served by the
server itself. It sits beside the API and uses the same services and the same permission
checks (console/session.py)."""
