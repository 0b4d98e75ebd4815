"""``GET /notices``: the ``rights.notice`` messages this node sent (AVG art. 19) and who
complied — for the officers and the contactpunt. Open notices (a recipient has not accepted)
come first (:mod:`gateway.console.data.notices`). The view records its ``console.access``
first, like every page.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.audit.inspect import open_readonly
from gateway.console.access import Access
from gateway.console.app import CONSOLE, allow, render, session_of
from gateway.console.data.notices import SentNotice, sent_notices
from gateway.console.roles import OFFICERS, Role

__all__ = ["add_routes", "notices_page"]


@allow(*OFFICERS, Role.CONTACTPUNT)
async def notices_page(request: web.Request) -> web.StreamResponse:
    """The notices this node sent, open ones first, with each recipient's status."""
    console = request.app[CONSOLE]
    session = session_of(request)
    if session is None:  # allow() lets only sessions through
        raise web.HTTPForbidden

    def run() -> list[SentNotice]:
        with open_readonly(console.store_path) as db:
            return sent_notices(db)

    notices = await asyncio.to_thread(run)
    await console.look(Access(session.identity, "notices", len(notices)))
    names = {m.oin: m.name for m in console.directory.payload.members}
    context = {
        "notices": notices,
        "open_count": sum(1 for n in notices if n.open),
        "names": names,
    }
    return render(request, "notices.html", context)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/notices", notices_page)
