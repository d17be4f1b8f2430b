"""``POST /login`` and ``POST /logout``: the read/operator token exchanged for a session cookie.

Sessions are server-side (shared by every instance through the database), the cookie HttpOnly and
SameSite=Strict; past 10 bad tokens a minute from one address even the right token is refused.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.core.intent import is_json
from pm_engine.core.signals import SignalValidationError
from pm_engine.web.access import SESSION_COOKIE, client_address
from pm_engine.web.context import WebContext, error, form_or_json


def sessions_router(ctx: WebContext) -> APIRouter:
    router = APIRouter()
    access = ctx.access

    @router.post("/login", summary="Exchange the read/operator token (form or JSON field token) for a session cookie")
    async def login(request: Request) -> Response:
        try:
            data = await form_or_json(request)
        except SignalValidationError as exc:
            return ctx.refuse(request, b"", 422, str(exc), exc.field)
        if ctx.web.read_token is None:
            return error(404, "no read token is configured: nothing to log in with (this machine reads freely)")
        scripted = is_json(request.headers.get("content-type"))  # else the login form
        address = client_address(request)
        retry_after = ctx.token_failures.blocked(address)  # past the limit, the right token is refused too
        if retry_after is None and not access.token_ok(str(data.get("token") or "")):
            retry_after = ctx.refusals.bad_credential(ctx.token_failures, address, "login refused: bad token")
            if retry_after is None:
                ctx.refuse(request, b"", 401, "bad token", "token")
                if not scripted:  # the form again (web/dashboard.py renders it)
                    return request.app.state.login_failed(request, "That is not the read/operator token.")
                return error(401, "bad token", "token")
        if retry_after is not None:
            return ctx.refuse(request, b"", 429, "too many bad tokens from this address; retry later", None,
                              {"Retry-After": str(retry_after)})
        try:
            session = await run_in_threadpool(access.new_session, address)
        except DatabaseUnavailableError:
            return error(503, "database unavailable; cannot open a session")
        answer: Response
        if scripted:
            answer = JSONResponse({"ok": True, "csrf_token": access.csrf_token(session)})
        else:
            answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(SESSION_COOKIE, session, max_age=int(access.session_s), httponly=True, samesite="strict",
                          secure=request.url.scheme == "https", path="/")
        return answer

    @router.post("/logout", summary="End this session (revoked for every instance)")
    def logout(request: Request) -> Response:
        try:
            access.end_session(request.cookies.get(SESSION_COOKIE))
        except DatabaseUnavailableError:
            return error(503, "database unavailable; the session was not ended")
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer

    return router
