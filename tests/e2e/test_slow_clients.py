"""Slow clients cannot stop it: behind deploy/nginx.conf, 200 connections that send their headers one line every 5 s
(slowloris) for 30 s leave routing calls answered within a second. Loopback only, bounded in sockets and time."""

import socket
import threading
import time

from tests.e2e.processes import Https, unverified_tls

SOCKETS = 200
ATTACK_SECONDS = 30
LINE_EVERY = 5
MAX_OPENED = 2_000  # reconnections included: nginx drops a client that has not sent its headers in time
PROBE_EVERY = 0.5
PROBE_LIMIT = 1.0
ROUTE = {"category": "general", "complexity": "medium", "estimated_input_tokens": 1200, "estimated_output_tokens": 800}


class Slowloris:
    """SOCKETS TLS connections to the proxy, each sending a request's headers one line every LINE_EVERY seconds and
    never finishing them; a connection the proxy closed is opened again, up to MAX_OPENED in all."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.context = unverified_tls()
        self.sockets: list[socket.socket] = []
        self.opened = self.closed_by_proxy = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open(self) -> socket.socket | None:
        if self.opened >= MAX_OPENED:
            return None
        self.opened += 1
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock = self.context.wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(b"POST /api/v1/route HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        return sock

    def run(self) -> None:
        for _ in range(SOCKETS):
            self.sockets.append(self.open())
        line = 0
        while not self.stop.wait(LINE_EVERY):
            line += 1
            for index, sock in enumerate(self.sockets):
                try:
                    sock.sendall(f"X-Slow-{line}: {'a' * 20}\r\n".encode())
                except OSError:
                    self.closed_by_proxy += 1
                    sock.close()
                    replacement = self.open()
                    if replacement:
                        self.sockets[index] = replacement

    def __enter__(self) -> "Slowloris":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        for sock in self.sockets:
            sock.close()


def test_routing_calls_are_answered_within_a_second_while_200_clients_send_headers_slowly(production, proxy):
    client = Https(proxy.base_url, bearer=production.key("route,usage,read"))
    assert client.post("/api/v1/route", json_body=ROUTE).status == 200

    latencies, statuses = [], []
    with Slowloris(proxy.port) as attack:
        opening = time.monotonic() + 30
        while len(attack.sockets) < SOCKETS and time.monotonic() < opening:
            time.sleep(0.1)  # every attacking connection open before the first probe
        assert len(attack.sockets) == SOCKETS
        deadline = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < deadline:
            started = time.monotonic()
            answer = client.post("/api/v1/route", json_body=ROUTE, timeout=PROBE_LIMIT * 5)
            latencies.append(time.monotonic() - started)
            statuses.append(answer.status)
            time.sleep(max(0.0, PROBE_EVERY - latencies[-1]))
        opened, closed = attack.opened, attack.closed_by_proxy

    latencies.sort()
    figures = (f"{len(latencies)} probes, median {latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; "
               f"{opened} attacking connections opened, {closed} closed by nginx")
    print(figures)
    assert set(statuses) == {200}, figures
    assert latencies[-1] < PROBE_LIMIT, figures
    assert len(latencies) >= ATTACK_SECONDS / PROBE_EVERY * 0.8, figures
    proxy.check_alive()
