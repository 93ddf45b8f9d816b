"""The shim's event loop: a failing callback is reported (to the shim's --log, the daemon's
<exec-root>/shim.log) and the loop goes on; after 50 failures of one registration that registration is
dropped, and a later registration of the same fd number starts afresh."""

from __future__ import annotations

import os
import selectors
import signal

import pytest

from engine.runtime.shim.loop import Loop


@pytest.fixture
def loop():  # type: ignore[no-untyped-def]
    old = signal.getsignal(signal.SIGCHLD)
    lp = Loop()
    try:
        yield lp
    finally:
        lp.sel.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, old)
        os.close(lp._wr)
        os.close(lp._ww)


def test_a_failing_callback_is_reported_and_dropped_after_50(loop: Loop, capfd: pytest.CaptureFixture[str]) -> None:
    r, w = os.pipe()
    os.write(w, b"x")  # stays readable: the callback never reads
    calls = [0]

    def broken(_mask: int) -> None:
        calls[0] += 1
        raise RuntimeError("handler bug")

    loop.add(r, selectors.EVENT_READ, broken)

    def watch() -> None:  # the loop's own rounds go on; stop once the registration is gone
        if r not in loop.sel.get_map():
            loop.stopping = True
        else:
            loop.call_later(0.001, watch)

    loop.call_later(0.001, watch)
    loop.call_later(5.0, lambda: setattr(loop, "stopping", True))  # a bound if the rule broke
    loop.run()
    err = capfd.readouterr().err
    assert calls[0] == 50 and r not in loop.sel.get_map()
    assert f"engine-shim[{os.getpid()}]" in err and "a callback failed" in err and "RuntimeError: handler bug" in err
    loop.add(r, selectors.EVENT_READ, lambda _m: None)  # the same number registered again starts afresh
    assert loop._failures.get(r, 0) == 0
    os.close(r)
    os.close(w)
