"""The endpoint families of the emulator, one module each.

Each family is a mixin on :class:`~wxauth.testing._state.EmulatorState` with one method
per endpoint, ``(request, now) -> Outcome``; :class:`~wxauth.testing.FakeWeChat` inherits
them all and :meth:`~wxauth.testing.FakeWeChat.handle` picks one by path, with its lock
held. The rules each module follows are listed in ``docs/testing.md``.

- :mod:`.classic`: ``GET /cgi-bin/token``.
- :mod:`.stable`: ``POST /cgi-bin/stable_token``.
- :mod:`.wecom`: WeCom's ``GET /cgi-bin/gettoken``.
- :mod:`.api`: every other path: the ``access_token`` check, then a canned answer.
- :mod:`.ticket`: ``ticket/getticket`` and WeCom's ``get_jsapi_ticket`` / ``ticket/get``
  (the token check of :mod:`.api`, then a ticket); the JS-SDK signature check.
- :mod:`.quota`: ``clear_quota``, ``clear_quota/v2`` and ``openapi/quota/get``.
- :mod:`.component`: the Open Platform's ``/cgi-bin/component/`` endpoints (component and
  authorizer tokens, authorization codes, the authorizer list); :mod:`.api` is built on
  it, so an authorizer token works on every API path. It stands on
  :mod:`.component_checks` (the token, body and secret checks), which stands on
  :mod:`.component_controls` (the controls that play WeChat's side: tickets,
  authorizations); the records, paths and limits are in :mod:`.component_state`.
"""
