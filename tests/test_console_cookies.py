"""The console's session cookie: signed, refused when altered, signed with another secret, or too old."""
from __future__ import annotations

from reconciler.console.cookies import MAX_AGE, CookieSigner, cookie_secret
from reconciler.store.state_store import connect


def test_a_session_comes_back_only_from_a_cookie_this_secret_signed_within_its_age():
    signer = CookieSigner(b"s" * 32)
    session = signer.new("ark_key")
    value = signer.dump(session, now=1_000_000)
    assert signer.load(value, now=1_000_000 + MAX_AGE) == session
    assert signer.load(value, now=1_000_000 + MAX_AGE + 1) is None
    body, _, signature = value.rpartition(".")
    assert signer.load(body + "x." + signature, now=1_000_000) is None
    assert signer.load(body + "." + signature[:-1] + ("A" if signature[-1] != "A" else "B"), now=1_000_000) is None
    assert CookieSigner(b"t" * 32).load(value, now=1_000_000) is None
    for junk in ("", "no-dot", ".", "a.b", None):
        assert signer.load(junk) is None
    assert signer.new().key is None and signer.new().csrf != signer.new().csrf


def test_the_signing_secret_is_made_once_per_database(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'state.db'}")
    from reconciler.store import migrate

    migrate.upgrade(engine)
    first = cookie_secret(engine)
    assert len(first) == 32 and cookie_secret(engine) == first
    engine.dispose()
