"""The Raft KV service as it is run: three server processes on loopback, clients
over TCP.  Under concurrent writes from several client threads the leader is
killed with SIGKILL; the others elect a new leader and keep accepting writes; the
killed server is restarted and catches up; every acknowledged write is then read
back (linearizably) from the cluster.  Also: the CLI, and bad arguments (one line,
exit status 2)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from distcheck.impl.raft.client import ClientTiming, RaftClient, Unavailable
from distcheck.impl.raft.cluster import LocalCluster
from distcheck.impl.runtime.tcp import encode_frame
from tests.impl.waiting import wait_for

THREADS = 6


def test_no_acknowledged_write_is_lost_when_the_leader_is_killed(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path) as c:
        acked: dict[str, int] = {}
        lock = threading.Lock()
        stop = threading.Event()
        errors: list[str] = []

        def writer(t: int) -> None:
            client = c.client(ClientTiming(attempt=0.5, timeout=15.0))
            i = 0
            while not stop.is_set():
                key = f"t{t}.{i}"
                try:
                    client.put(key, i)
                except Unavailable as exc:
                    errors.append(str(exc))
                    continue
                with lock:
                    acked[key] = i
                i += 1
            client.close()

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
        for t in threads:
            t.start()
        try:
            wait_for(lambda: len(acked) >= 200, "200 acknowledged writes", timeout=20)
            old = c.leader()
            c.kill(old)
            killed_at = len(acked)
            wait_for(lambda: len(acked) >= killed_at + 200, "200 more writes after the kill", timeout=20)
            new = c.leader()
            assert new != old
            c.restart(old)
            restarted_at = len(acked)
            wait_for(lambda: len(acked) >= restarted_at + 100, "100 more writes after the restart", timeout=20)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[:3]

        reader = c.client()
        missing = {k: v for k, v in acked.items() if reader.get(k) != v}
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"

        # The restarted server catches up with the leader's log.
        leader = c.leader()
        with RaftClient(c.addresses) as probe:

            def caught_up() -> bool:
                lead, back = probe.status(leader), probe.status(old)
                return lead is not None and back is not None and back.last_applied >= lead.commit_index

            wait_for(caught_up, f"{old} to catch up", timeout=20)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distcheck.impl.raft.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_the_cli_puts_gets_cases_and_deletes(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path, base_port=None) as c:
        where = ["--clients", c.client_cluster]
        assert cli(*where, "put", "k", "v").stdout == "ok\n"
        assert cli(*where, "get", "k").stdout == '"v"\n'
        assert cli(*where, "cas", "k", "v", "42").stdout == "true\n"
        assert cli(*where, "cas", "k", "v", "43").stdout == "false\n"
        assert cli(*where, "get", "k").stdout == "42\n"
        assert cli(*where, "delete", "k").stdout == "true\n"
        assert cli(*where, "get", "k").stdout == "null\n"
        status = cli(*where, "status").stdout
        assert status.count("leader") >= 1 and "n3" in status


def test_the_client_port_takes_client_requests_only(tmp_path: Path) -> None:
    """A client that speaks Raft on the client port, or names itself after a server,
    is hung up on; the cluster serves the next client as before."""
    hostile = [
        ("n2", {"type": "AppendEntriesRequest", "term": 99, "prev_log_index": 0, "prev_log_term": 0,
                "entries": [], "commit_index": 0}),
        ("n2", {"type": "Query", "route": "", "client": "n2", "seq": 1, "key": "k"}),
        ("mallory", {"type": "RequestVoteRequest", "term": 99, "last_log_term": 0, "last_log_index": 0}),
    ]  # fmt: skip
    with LocalCluster(3, tmp_path) as c:
        client = c.client()
        client.put("k", "v")
        leader = c.leader()
        for src, msg in hostile:
            with socket.create_connection(c.addresses[leader], timeout=5) as conn:
                conn.sendall(encode_frame(src, msg))
                conn.settimeout(5)
                assert conn.recv(1 << 16) == b"", f"{msg['type']} from {src} was not refused"
        assert c.leader() == leader  # no term was taken over
        assert client.get("k") == "v"


def test_bad_arguments_are_one_line_and_exit_status_2(tmp_path: Path) -> None:
    bad = [
        ["distcheck.impl.raft.cli", "--cluster", "n1=nowhere", "get", "k"],
        ["distcheck.impl.raft.cli", "--cluster", "n1=127.0.0.1:7001", "frobnicate"],
        ["distcheck.impl.raft.cli", "get", "k"],
        ["distcheck.impl.raft.server", "--name", "n9", "--cluster", "n1=127.0.0.1:7001", "--data", str(tmp_path)],
        [
            "distcheck.impl.raft.server",
            "--name",
            "n1",
            "--cluster",
            "n1=127.0.0.1:7001,n1=127.0.0.1:7002",
            "--data",
            "x",
        ],
        [
            "distcheck.impl.raft.server",
            "--name",
            "n1",
            "--cluster",
            "n1=127.0.0.1:7001",
            "--data",
            "x",
            "--max-batch",
            "0",
        ],
        [
            "distcheck.impl.raft.server",
            "--name",
            "n1",
            "--cluster",
            "n1=127.0.0.1:7001",
            "--data",
            "x",
            "--heartbeat",
            "-1",
        ],
    ]
    for args in bad:
        done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_a_client_with_no_server_gives_up_in_its_time() -> None:
    client = RaftClient("n1=127.0.0.1:1", ClientTiming(attempt=0.1, timeout=0.5))
    start = time.monotonic()
    try:
        client.get("k")
    except Unavailable as exc:
        assert "no leader answered within 0.5 s" in str(exc)
    else:
        raise AssertionError("a get with no server answered")
    assert time.monotonic() - start < 5


def test_a_server_is_added_and_another_removed_while_the_cluster_serves(tmp_path: Path) -> None:
    with LocalCluster(3, tmp_path, spares=1) as c:
        client = c.client()
        client.put("a", 1)
        assert c.add_server("n4") is True
        assert c.add_server("n4") is False  # a member already
        client.put("b", 2)
        assert c.remove_server("n1") is True
        c.kill("n1")
        client.put("c", 3)
        assert [client.get(k) for k in "abc"] == [1, 2, 3]
        with RaftClient(c.addresses) as probe:

            def n4_has_everything() -> bool:
                status = probe.status("n4")
                return status is not None and status.members == ("n2", "n3", "n4") and status.last_applied >= 5

            wait_for(n4_has_everything, "n4 to be a member with the whole log", timeout=20)
        done = cli("--clients", c.client_cluster, "add-server", "n9")
        assert done.returncode == 1 and "n9 is not one of the servers" in done.stderr
