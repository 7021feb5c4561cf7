"""Run the WebSocket hub: ``wshub [--option=value ...] [--config=FILE]``
(or ``python server.py ...`` from a checkout).

Wiring only: options, the Tornado Application, the heartbeat, signals. The
rules live in ``hub/``; the socket adapters in ``handlers/``.
"""

from __future__ import annotations

import os
import sys

if __package__:
    # Installed, this file is ``_wshub/server.py``, next to our ``hub``, ``handlers``
    # and ``static``: they are imported as top-level names from that private
    # directory, which goes first on sys.path so no other distribution's
    # ``hub`` or ``handlers`` can shadow ours (README, "Install").
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import asyncio
import contextlib
import difflib
import errno
import gc
import io
import logging
import re
import resource
import signal
import socket
import ssl
import textwrap
import types
from typing import Any

import tornado
import tornado.netutil
import tornado.process
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.options import Error as OptionError
from tornado.options import define, options

from handlers.api import api_routes, parse_api_keys
from handlers.base import origin_key
from handlers.deflate import DeflateSettings
from handlers.diagnostics import Diagnostics
from handlers.echo import EchoSocketHandler
from handlers.fanout.batch_writer import default_threads, describe_writer, make_batch_writer
from handlers.hosts import default_allowed_hosts, parse_allowed_hosts
from handlers.http import AdminPageHandler, HealthHandler, PageHandler
from handlers.hub_socket import HubSocketHandler
from handlers.listener import LISTEN_BACKLOG, GuardedHTTPServer
from handlers.log_format import apply_log_format
from handlers.log_privacy import keep_queries_out_of_logs
from handlers.metrics import MULTIPROC_ENV, MetricsExporter, metrics_routes, prepare_multiprocess
from handlers.metrics import available as metrics_available
from handlers.tls import TlsConfigError, server_context
from handlers.tornado_compat import UnsupportedTornado, self_check
from hub.auth import TokenVerifier
from hub.broker import Broker, MemoryBroker
from hub.heartbeat import Heartbeat
from hub.hub import Hub
from hub.settings import HubSettings

log = logging.getLogger("wshub")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
FD_RESERVE = 64
"""File descriptors kept free for listening sockets, logs and the like."""

_defaults = HubSettings()
LISTEN, CONNECTIONS, MESSAGES, HISTORY, AUTH, FAN_OUT, SCALE_OUT, CONFIG = (
    "Listening",
    "Connections and heartbeats",
    "Messages and limits",
    "History",
    "Tokens and the backend API",
    "Fan-out",
    "Scale-out (several processes and machines)",
    "Configuration file",
)
OPTION_GROUPS = (LISTEN, CONNECTIONS, MESSAGES, HISTORY, AUTH, FAN_OUT, SCALE_OUT, CONFIG)
"""The order ``--help`` shows our option groups in; Tornado's logging options follow."""

define("host", default="127.0.0.1", group=LISTEN, help="address to listen on; :: is IPv6 and IPv4")
define("port", default=8888, group=LISTEN, help="TCP port to listen on (0 picks a free one)")
define(
    "max_connections",
    default=_defaults.max_connections,
    group=CONNECTIONS,
    help="open WebSocket connections, all endpoints (count; beyond it 1013)",
)
define(
    "max_connections_per_ip",
    default=_defaults.max_connections_per_ip,
    group=CONNECTIONS,
    help="connections from one client address (count; 0: no limit; beyond it 1008)",
)
define(
    "ping_interval",
    default=_defaults.ping_interval,
    group=CONNECTIONS,
    help="seconds between pings to each client",
)
define(
    "ping_timeout",
    default=_defaults.ping_timeout,
    group=CONNECTIONS,
    help="seconds a client may stay silent after a ping before it is closed (4000)",
)
define(
    "max_message_size",
    default=64 * 1024,
    group=MESSAGES,
    help="bytes one incoming message may have (larger: closed with 1009)",
)
define(
    "send_buffer_limit",
    default=_defaults.send_buffer_limit,
    group=MESSAGES,
    help="bytes queued to one client before it is dropped as a slow consumer (4001)",
)
define(
    "allowed_origins",
    default="",
    group=MESSAGES,
    help="comma-separated full origins (https://app.example) allowed besides the server's own",
)
define(
    "rate_limit",
    default=_defaults.rate_limit,
    group=MESSAGES,
    help="messages per second one /ws connection may send on average (0: off)",
)
define(
    "rate_burst",
    default=_defaults.rate_burst,
    group=MESSAGES,
    help="messages one /ws connection may send in a burst (count)",
)
define(
    "max_rooms_per_connection",
    default=_defaults.max_rooms_per_connection,
    group=MESSAGES,
    help="rooms one connection may be in (count; 0: no limit)",
)
define(
    "compression",
    default=False,
    group=MESSAGES,
    help="offer permessage-deflate (true/false; costs CPU and memory per connection)",
)
define(
    "history_size",
    default=_defaults.history_size,
    group=HISTORY,
    help="messages kept per room for resuming clients (count)",
)
define(
    "history_ttl",
    default=_defaults.history_ttl,
    group=HISTORY,
    help="seconds a room's history outlives its last member",
)
define(
    "ping_rate_limit",
    default=_defaults.ping_rate_limit,
    group=CONNECTIONS,
    help="pings/s a client may send (bursts of 50; past it no pong, then 1008; 0: off)",
)
define(
    "history_bytes",
    default=_defaults.history_bytes,
    group=HISTORY,
    help="bytes of messages kept per room, oldest dropped first (0: count only)",
)
define(
    "history_memory_limit",
    default=_defaults.history_memory_limit,
    group=HISTORY,
    help="bytes of history for all rooms; least recently used rooms lose theirs (0: no limit)",
)
_deflate = DeflateSettings()
define(
    "compression_level",
    default=_deflate.level,
    group=MESSAGES,
    help="zlib level 0-9 for permessage-deflate",
)
define(
    "compression_mem_level",
    group=MESSAGES,
    default=_deflate.mem_level,
    help="zlib memLevel 1-9: a compressor's hash table and buffer, 2**(n+9) bytes",
)
define(
    "compression_window_bits",
    group=MESSAGES,
    default=_deflate.window_bits,
    help="largest deflate window, 9-15 (2**n bytes), ours and, when offered, the client's",
)
define(
    "compression_context_takeover",
    group=MESSAGES,
    default=_deflate.context_takeover,
    help="keep the server's compressor between messages (costs its state per connection)",
)
define(
    "send_threads",
    default=default_threads(),
    group=FAN_OUT,
    help="threads a big fan-out's sends are spread over, GIL released (count; 0: through the "
    "event loop's transports)",
)
define(
    "idle_connection_timeout",
    default=30.0,
    group=CONNECTIONS,
    help="seconds a request's headers may take to arrive (and an HTTP connection may idle)",
)
define(
    "body_timeout",
    default=10.0,
    group=CONNECTIONS,
    help="seconds a request's body may take to arrive",
)
define(
    "max_pending_connections",
    default=2000,
    group=CONNECTIONS,
    help="sockets not yet WebSocket connections (HTTP requests, handshakes; count); beyond it 503",
)
define(
    "max_pending_per_ip",
    default=256,
    group=CONNECTIONS,
    help="pending sockets from one client address (count; 0: off)",
)
define(
    "allowed_hosts",
    default="",
    group=LISTEN,
    help="comma-separated Host names accepted on /ws and /ws/echo; * for any"
    " (default: the bind address, localhost and this machine's names; any for 0.0.0.0)",
)
define(
    "metrics",
    default="on" if metrics_available() else "off",
    group=LISTEN,
    help="serve Prometheus metrics on /metrics (on/off; needs prometheus_client; with "
    "--api_key it needs the key)",
)
define(
    "certfile",
    default="",
    group=LISTEN,
    help="PEM certificate chain (server's first): with --keyfile, serve https:// and wss://",
)
define(
    "keyfile",
    default="",
    group=LISTEN,
    help="PEM private key of --certfile, unencrypted (both or neither)",
)
define(
    "token_secret",
    default="",
    group=AUTH,
    help="HS256 secret: /ws then requires a connection token (JWT)",
)
define(
    "token_public_key",
    default="",
    group=AUTH,
    help="path of a PEM public key (RS256 or ES256): /ws then requires a connection token",
)
define("token_audience", default="", group=AUTH, help="required aud claim of connection tokens")
define("token_issuer", default="", group=AUTH, help="required iss claim of connection tokens")
define(
    "api_key",
    default="",
    group=AUTH,
    help="comma-separated keys of the backend API under /api/ (empty: the API is off)",
)
define(
    "handoff",
    default="on",
    group=FAN_OUT,
    help="on: hand sockets off from Tornado after the upgrade (fast); off: Tornado's public "
    "WebSocket API only (slower, no Tornado internals on the data path)",
)
define(
    "broker",
    default="memory",
    group=SCALE_OUT,
    help="where rooms' shared state lives: memory (one process), or redis://host:port/db "
    "(rediss:// for TLS, unix:///path.sock) for several processes and machines as one hub",
)
define(
    "processes",
    default=1,
    group=SCALE_OUT,
    help="worker processes on the port (count; 0: one per core); more than 1 needs --broker",
)
define(
    "node_timeout",
    default=15.0,
    group=SCALE_OUT,
    help="seconds a node that stopped heart-beating keeps its members in presence",
)
define(
    "presence_limit",
    default=_defaults.presence_limit,
    group=SCALE_OUT,
    help="members a room lists in joined and announces one by one (count); beyond it, "
    "a count event once a second",
)
LOGS = "Logs"
OPTION_GROUPS = (*OPTION_GROUPS, LOGS)
define(
    "log_format",
    default="text",
    group=LOGS,
    help="text: lines for people; json: one JSON object per line, every record (docs/logging.md)",
)
define(
    "config",
    type=str,
    group=CONFIG,
    help="path of a file of option = value lines in Python syntax; flags override it",
)


class StartupError(Exception):
    """A mistake in how the server was started: printed as one line, exit status 2."""


EXIT_USAGE = 2
"""Exit status for a start-up mistake, as argparse and most Unix tools use."""

_KINDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _option_type(name: str) -> type:
    """The type an option holds (a float option's default is a float, and so on)."""
    value = getattr(options, name)
    return str if value is None else type(value)


def _unknown(name: str, where: str) -> StartupError:
    """An unknown option, with the nearest known name as a hint; ``where`` is
    empty for a flag, ``FILE: `` for a config file line."""
    known = [known.replace("-", "_") for known in options]
    close = difflib.get_close_matches(name.replace("-", "_"), known, n=1)
    shown = f"{name!r}" if where else f"--{name}"
    dashes = "" if where else "--"
    hint = f"did you mean {dashes}{close[0]}?" if close else "wshub --help lists them"
    return StartupError(f"{where}unknown option {shown}; {hint}")


def _bad_value(name: str, value: Any, where: str) -> StartupError:
    """A value of the wrong kind, with an example of a right one."""
    kind = _KINDS.get(_option_type(name), _option_type(name).__name__)
    default = getattr(options, name)
    if where:
        return StartupError(f"{where}{name} = {value!r} is not {kind}; like {name} = {default!r}")
    return StartupError(f"--{name}={value} is not {kind}; write it like --{name}={default}")


def _parse_flags(argv: list[str]) -> None:
    """Apply ``--name=value`` flags one by one, so a mistake names its flag."""
    for arg in argv[1:]:
        if arg in ("-h", "--help", "-help", "--help=true"):
            print_help()
            raise SystemExit(0)
        if not arg.startswith("-"):
            raise StartupError(f"unexpected argument {arg!r}; options look like --port=9000")
        name, equals, value = arg.lstrip("-").partition("=")
        if name not in options:
            raise _unknown(name, "")
        name = name.replace("-", "_")
        if not equals and _option_type(name) is not bool:
            raise StartupError(f"--{name} needs a value, like --{name}={getattr(options, name)}")
        try:
            options.parse_command_line([argv[0], arg], final=False)
        except (ValueError, OptionError):
            raise _bad_value(name, value, "") from None


def _set_from_file(name: str, value: Any, where: str) -> None:
    """Set one option from the config file; whole numbers are fine where a float is."""
    expected = _option_type(name)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    try:
        if isinstance(value, str) and expected is not str:
            options.parse_command_line(["wshub", f"--{name}={value}"], final=False)
        else:
            setattr(options, name, value)
    except (ValueError, OptionError):
        raise _bad_value(name, value, where) from None


def _read_config_file(path: str) -> None:
    """Run the config file as Python and apply every option it sets.

    Unlike Tornado's own reader, whole numbers are accepted for float options and
    an unknown name is an error rather than silently ignored.
    """
    try:
        with open(path, "rb") as file:
            source = file.read()
    except FileNotFoundError:
        raise StartupError(
            f"config file {path!r} does not exist (relative to {os.getcwd()}); "
            "check the path given to --config"
        ) from None
    except OSError as exc:
        raise StartupError(f"config file {path!r} cannot be read: {exc.strerror}") from None
    namespace: dict[str, Any] = {"__file__": os.path.abspath(path)}
    try:
        exec(compile(source, path, "exec"), namespace)
    except SyntaxError as exc:
        raise StartupError(
            f"{path}, line {exc.lineno}: {exc.msg}; lines look like  port = 9000"
        ) from None
    except Exception as exc:
        raise StartupError(f"{path}: {type(exc).__name__}: {exc}") from None
    for name, value in namespace.items():
        if name.startswith("_") or isinstance(value, types.ModuleType | types.FunctionType | type):
            continue
        if name not in options:
            raise _unknown(name, f"{path}: ")
        _set_from_file(name.replace("-", "_"), value, f"{path}: ")


def load_options(argv: list[str] | None = None) -> None:
    """Command line, then the config file it names, then the command line again
    so that flags override the file; raises `StartupError` on any mistake."""
    argv = sys.argv if argv is None else argv
    _parse_flags(argv)
    if options.config:
        _read_config_file(options.config)
        _parse_flags(argv)
    options.run_parse_callbacks()


_HELP_ENTRY = re.compile(r"^  --(?P<name>[^=\s]+)(?:=\S*)?\s*(?P<text>.*)$")


def _help_texts() -> dict[str, str]:
    """Each option's help text with its default, as Tornado's own help prints it."""
    printed = io.StringIO()
    options.print_help(printed)
    texts: dict[str, str] = {}
    name = None
    for line in printed.getvalue().splitlines():
        entry = _HELP_ENTRY.match(line)
        if entry:
            name = entry["name"].replace("-", "_")
            texts[name] = entry["text"]
        elif name is not None and line.startswith(" " * 30):
            texts[name] = f"{texts[name]} {line.strip()}".strip()
        else:
            name = None
    return texts


def print_help(file: Any = None) -> None:
    """Our options first, in groups, with underscores as the README writes them;
    then anything else defined (Tornado's logging options last)."""
    file = sys.stdout if file is None else file
    texts = _help_texts()
    tornado_dir = os.path.dirname(os.path.abspath(tornado.__file__))
    ours = [group for group in OPTION_GROUPS if group in options.groups()]
    others = sorted(g for g in options.groups() if g not in ours and g)
    tornados = [g for g in others if os.path.abspath(g).startswith(tornado_dir + os.sep)]
    sections = [(group, [group]) for group in ours]
    sections.append(("Other options", [g for g in others if g not in tornados]))
    sections.append(("Logging (Tornado's options)", tornados))
    out = ["Usage: wshub [--option=value ...]   (or: python server.py ...)", ""]
    out.append("Times are in seconds, sizes in bytes; --config=FILE reads the same names.")
    for title, groups in sections:
        names = [name.replace("-", "_") for g in groups for name in options.group_dict(g)]
        if not names:
            continue
        out += ["", f"{title}:"]
        for name in names:
            lines = textwrap.wrap(texts.get(name, ""), 76 - 30) or [""]
            flag = f"--{name}"
            if len(flag) > 28:
                out.append(f"  {flag}")
                out += [f"{'':30}{line}" for line in lines]
            else:
                out.append(f"  {flag:28}{lines[0]}")
                out += [f"{'':30}{line}" for line in lines[1:]]
    out += ["", f"  {'--help':28}show this help and exit"]
    print("\n".join(out), file=file)


GC_THRESHOLDS = (20_000, 20, 20)
"""Young-generation collections every 20,000 allocations instead of 700.

A handshake allocates a few hundred short-lived container objects (Tornado's
request, headers, handler); with the default threshold the collector runs
several times per handshake and, with tens of thousands of live connections,
its older-generation passes get expensive. Measured with ``python -m bench
handshakes``: about 10% less CPU per handshake. The cost is a few MB of garbage
waiting a little longer to be collected.
"""


def tune_gc() -> None:
    """Freeze what start-up allocated (never garbage, never scanned again) and
    collect the young generation less often; see `GC_THRESHOLDS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def raise_fd_limit() -> int:
    """Raise the open-file soft limit to the hard limit; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d: %s", soft, exc)
    return soft


def hub_settings(fd_limit: int) -> HubSettings:
    """Settings from the options, max_connections kept below the open-file limit."""
    max_connections = options.max_connections
    ceiling = fd_limit - FD_RESERVE
    if max_connections > ceiling:
        log.warning(
            "max_connections %d lowered to %d: this process may open %d files",
            max_connections,
            ceiling,
            fd_limit,
        )
        max_connections = ceiling
    return HubSettings(
        max_connections=max_connections,
        ping_interval=options.ping_interval,
        ping_timeout=options.ping_timeout,
        send_buffer_limit=options.send_buffer_limit,
        history_size=options.history_size,
        history_ttl=options.history_ttl,
        history_bytes=options.history_bytes,
        history_memory_limit=options.history_memory_limit,
        rate_limit=options.rate_limit,
        rate_burst=options.rate_burst,
        max_rooms_per_connection=options.max_rooms_per_connection,
        max_connections_per_ip=options.max_connections_per_ip,
        ping_rate_limit=options.ping_rate_limit,
        presence_limit=options.presence_limit,
    )


def deflate_settings() -> DeflateSettings | bool:
    """The permessage-deflate settings from the options, or False when it is off."""
    if not options.compression:
        return False
    try:
        return DeflateSettings(
            level=options.compression_level,
            mem_level=options.compression_mem_level,
            window_bits=options.compression_window_bits,
            context_takeover=options.compression_context_takeover,
        )
    except ValueError as error:
        raise StartupError(str(error)) from None


def token_verifier() -> TokenVerifier | None:
    """The verifier the token options describe, or None for an open server."""
    if not options.token_secret and not options.token_public_key:
        return None
    pem = None
    if options.token_public_key:
        try:
            with open(options.token_public_key, "rb") as file:
                pem = file.read()
        except OSError as error:
            raise StartupError(
                f"token_public_key: cannot read {error.filename}: {error.strerror}"
            ) from None
    try:
        return TokenVerifier(
            options.token_secret or None, pem, options.token_audience, options.token_issuer
        )
    except (RuntimeError, ValueError) as error:
        raise StartupError(f"token options: {error}") from None


def parse_origins(value: str) -> frozenset[str]:
    """``https://a.example, https://b.example`` -> normalised set; bad entries are fatal."""
    origins = set()
    for item in filter(None, (part.strip().lower().rstrip("/") for part in value.split(","))):
        if origin_key(item) is None:
            raise StartupError(f"allowed_origins: {item!r} is not a full origin like https://host")
        origins.add(item)
    return frozenset(origins)


def _check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise StartupError(f"--port={port} is not a TCP port; use 1-65535 (0 picks a free one)")


def listen(host: str, port: int, reuse_port: bool = False) -> list[socket.socket]:
    """Bind the listening sockets: IPv4 or IPv6 as ``host`` is written, and both for
    ``::`` (Tornado binds every address family when given no host)."""
    _check_port(port)
    try:
        return tornado.netutil.bind_sockets(
            port,
            None if host in ("::", "") else host,
            backlog=LISTEN_BACKLOG,
            reuse_port=reuse_port,
        )
    except OSError as exc:
        raise StartupError(_bind_problem(host, port, exc)) from None


def reserve_port(host: str, port: int) -> tuple[int, list[socket.socket]]:
    """Bind, without listening, the addresses the workers will listen on with
    SO_REUSEPORT: that holds the port (and picks it, for 0) while they start. A
    listening socket here would be handed connections that nobody accepts."""
    _check_port(port)
    held: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in socket.getaddrinfo(
            None if host in ("::", "") else host,
            port,
            socket.AF_UNSPEC,
            socket.SOCK_STREAM,
            0,
            socket.AI_PASSIVE,
        ):
            sock = socket.socket(family, kind, proto)
            held.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = sock.getsockname()[1]  # the one 0 picked, for the other families too
    except OSError as exc:
        for sock in held:
            sock.close()
        raise StartupError(_bind_problem(host, port, exc)) from None
    return port, held


BROKER_SCHEMES = ("redis://", "rediss://", "unix://")


def check_broker_options() -> None:
    """Refuse, with a line saying how to fix it, a broker or process count that cannot work."""
    url = options.broker
    if url != "memory" and not url.startswith(BROKER_SCHEMES):
        raise StartupError(f"--broker={url}: use memory, or a URL such as redis://127.0.0.1:6379/0")
    if options.processes != 1 and url == "memory":
        raise StartupError(
            f"--processes={options.processes} needs a broker the processes share: "
            "add --broker=redis://HOST:6379/0"
        )
    if url != "memory":
        try:
            import redis  # noqa: F401
        except ImportError:
            raise StartupError(
                "--broker=redis://... needs redis-py: pip install 'tornado-wshub[redis]'"
            ) from None


def make_broker(settings: HubSettings) -> Broker:
    """The broker the options name (checked by `check_broker_options`)."""
    if options.broker == "memory":
        return MemoryBroker.for_settings(settings)
    from hub.redis_broker import RedisBroker  # redis-py is needed only here

    return RedisBroker(
        options.broker,
        history_size=settings.history_size,
        history_ttl=settings.history_ttl,
        node_timeout=options.node_timeout,
        presence_limit=settings.presence_limit,
    )


def run_workers(count: int, host: str, port: int) -> int:
    """Fork ``count`` workers (Tornado's `fork_processes`, which restarts one that
    dies); returns, in each worker, the port to listen on with SO_REUSEPORT, so
    that the kernel spreads new connections evenly over the workers. The parent
    exits 0 once all workers stopped; SIGTERM or SIGINT to it is passed on to
    the workers, which close their clients with 1001 and exit 0."""
    port, reserved = reserve_port(host, port)
    stopping = False

    def pass_on(signum: int, _frame: object) -> None:
        nonlocal stopping
        if tornado.process.task_id() is not None:
            raise SystemExit(0)  # a worker, before its loop took the signal over
        stopping = True
        for pid in _children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    tornado.process.fork_processes(count)
    for sock in reserved:
        sock.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if stopping:  # restarted by fork_processes while stopping
        raise SystemExit(0)
    return port


def _children() -> list[int]:
    """This process's children (Linux: /proc/self/task/*/children)."""
    pids: list[int] = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            pids.extend(int(pid) for pid in listing.read().split())
    return pids


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    """What went wrong binding ``host:port``, and what to do about it, in one line."""
    if isinstance(exc, socket.gaierror):
        return (
            f"--host={host} is not an address or a known host name; use an IP address "
            "such as 127.0.0.1, 0.0.0.0 (all IPv4), ::1 or :: (IPv6 and IPv4)"
        )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use by another process; stop it, or "
            "choose another port with --port=N (--port=0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}; choose a port above 1023, like --port=8888"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"--host={host} is not an address of this machine; use one it has, "
            "such as 127.0.0.1, 0.0.0.0 (all IPv4) or :: (IPv6 and IPv4)"
        )
    if exc.errno == errno.EAFNOSUPPORT:
        return f"--host={host}: this machine has no IPv6; use an IPv4 address such as 0.0.0.0"
    return f"cannot listen on {host} port {port}: {exc.strerror or exc}"


def _url(sock: socket.socket, scheme: str = "http") -> str:
    host, port = sock.getsockname()[:2]
    return (
        f"{scheme}://[{host}]:{port}/"
        if sock.family == socket.AF_INET6
        else f"{scheme}://{host}:{port}/"
    )


def tls_context() -> ssl.SSLContext | None:
    """The SSL context ``--certfile`` and ``--keyfile`` describe (None: plain
    http:// and ws://); a mistake in them is a start-up error."""
    try:
        return server_context(options.certfile, options.keyfile)
    except TlsConfigError as error:
        raise StartupError(str(error)) from None


_SWITCH = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


def parse_switch(name: str, value: str) -> bool:
    """``on``/``off`` (or true/false, 1/0) -> bool; anything else is a start-up error.

    Tornado's own bool options would read ``off`` as true.
    """
    try:
        return _SWITCH[str(value).strip().lower()]
    except KeyError:
        raise StartupError(f"{name}: {value!r} is neither on nor off") from None


LOGGED_PATH_LENGTH = 200
"""Characters of a request's path an access-log line keeps: a 60 KB URL costs a 60 KB line."""


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Access log: failures at warning; the flood of 101s and 200s only at debug.

    Only the path is logged, never the query string (tokens travel in
    ``?token=``), cut to `LOGGED_PATH_LENGTH`; the method is cut as well.
    """
    status = handler.get_status()
    level = logging.WARNING if status >= 400 else logging.DEBUG
    if log.isEnabledFor(level):
        request = handler.request
        path = request.path
        if len(path) > LOGGED_PATH_LENGTH:
            path = path[:LOGGED_PATH_LENGTH] + "..."
        log.log(level, "%d %s %s (%s)", status, request.method[:16], path, request.remote_ip)


def log_format() -> None:
    """Apply ``--log_format`` to the log handler Tornado's option parsing installed."""
    try:
        apply_log_format(options.log_format)
    except ValueError as error:
        raise StartupError(str(error)) from None


def describe_deployment(hub: Hub, api_keys: tuple[str, ...]) -> str:
    """For the start-up line: processes, auth and TLS, each on or off."""
    processes = options.processes if options.processes > 0 else os.cpu_count() or 1
    tls = "on" if getattr(options, "certfile", None) else "off"
    return (
        f"{processes} process{'es' if processes != 1 else ''}, "
        f"tokens {'on' if hub.verifier is not None else 'off'}, "
        f"API {'on' if api_keys else 'off'}, TLS {tls}"
    )


def make_app(
    hub: Hub,
    allowed_origins: frozenset[str] = frozenset(),
    compression: bool | DeflateSettings = False,
    max_message_size: int = 64 * 1024,
    handoff: bool = True,
    diagnostics: Diagnostics | None = None,
    allowed_hosts: frozenset[str] | None = None,
    api_keys: tuple[str, ...] = (),
    metrics: MetricsExporter | None = None,
    tls: bool = False,
) -> tornado.web.Application:
    """The Tornado application: endpoints wired to one hub (and one `Diagnostics`,
    made here unless given; ``app.settings["diagnostics"]`` holds it).

    ``allowed_hosts``: the Host names the WebSocket endpoints accept (None: any);
    ``metrics``: what ``/metrics`` serves (None: no such endpoint).
    ``tls``: whether it is served over TLS (``app.settings["tls"]``, for logs
    and stats; the handlers look at each connection's own stream).
    """
    diagnostics = diagnostics or Diagnostics()
    socket_args = {
        "hub": hub,
        "allowed_origins": allowed_origins,
        "compression": compression,
        "handoff": handoff,
        "diagnostics": diagnostics,
        "allowed_hosts": allowed_hosts,
    }
    socket_routes = {
        "/ws": (HubSocketHandler, socket_args),
        "/ws/echo": (EchoSocketHandler, socket_args),
    }
    return tornado.web.Application(
        [
            *((path, handler, args) for path, (handler, args) in socket_routes.items()),
            (r"/healthz", HealthHandler, {"hub": hub, "diagnostics": diagnostics}),
            (r"/", PageHandler, {"path": STATIC_DIR, "page": "index.html"}),
            (r"/whiteboard", PageHandler, {"path": STATIC_DIR, "page": "whiteboard.html"}),
            (r"/admin", AdminPageHandler, {"path": STATIC_DIR, "api_on": bool(api_keys)}),
            (r"/static/(.*)", tornado.web.StaticFileHandler, {"path": STATIC_DIR}),
            *metrics_routes(metrics, api_keys),
            *api_routes(hub, api_keys, max_message_size),
        ],
        websocket_max_message_size=max_message_size,
        log_function=_log_request,
        diagnostics=diagnostics,
        tls=tls,
        # Plain upgrades to these are answered off the accepted socket (handlers.direct_upgrade).
        direct_upgrade_routes=socket_routes if handoff else None,
    )


def allowed_hosts_option() -> frozenset[str] | None:
    """The Host names the WebSocket endpoints accept (None: any), from the options."""
    try:
        if options.allowed_hosts:
            return parse_allowed_hosts(options.allowed_hosts)
        return default_allowed_hosts(options.host)
    except SystemExit as exc:  # a bad entry
        raise StartupError(str(exc)) from None


def make_http_server(
    app: tornado.web.Application,
    max_body_size: int = 64 * 1024,
    idle_connection_timeout: float = 30.0,
    body_timeout: float = 10.0,
    max_pending: int = 2000,
    max_pending_per_ip: int = 256,
    ssl_context: ssl.SSLContext | None = None,
) -> GuardedHTTPServer:
    """The HTTP server: every request's headers and body on a clock, pending
    sockets capped, an accept loop that survives running out of descriptors
    (see `handlers.listener`); TLS on every socket with ``ssl_context``."""
    return GuardedHTTPServer(
        app,
        ssl_options=ssl_context,
        max_body_size=max_body_size,
        idle_connection_timeout=idle_connection_timeout,
        body_timeout=body_timeout,
        max_pending=max_pending,
        max_pending_per_ip=max_pending_per_ip,
        direct_routes=app.settings.get("direct_upgrade_routes"),
    )


async def serve(
    sockets: list[socket.socket],
    allowed_origins: frozenset[str],
    handoff: bool = True,
    compression: bool | DeflateSettings = False,
    verifier: TokenVerifier | None = None,
    api_keys: tuple[str, ...] = (),
    metrics: bool = False,
    ssl_context: ssl.SSLContext | None = None,
) -> None:
    """Serve on the bound ``sockets`` until SIGINT/SIGTERM, then close every client with 1001;
    https:// and wss:// with ``ssl_context``."""
    fd_limit = raise_fd_limit()
    settings = hub_settings(fd_limit)
    broker = make_broker(settings)
    hub = Hub(settings, broker, write_batch=make_batch_writer(options.send_threads))
    hub.verifier = verifier
    start = getattr(broker, "start", None)
    if start is not None:
        await start()  # connects, or keeps trying in the background
    tune_gc()
    diagnostics = Diagnostics()
    diagnostics.install()
    allowed_hosts = allowed_hosts_option()
    if allowed_hosts is None:
        log.info("any Host header accepted (bound to %s; see --allowed_hosts)", options.host)
    exporter = MetricsExporter(hub) if metrics else None
    app = make_app(
        hub,
        allowed_origins,
        compression,
        options.max_message_size,
        handoff,
        diagnostics,
        allowed_hosts,
        api_keys,
        exporter,
        tls=ssl_context is not None,
    )
    server = make_http_server(
        app,
        max_body_size=options.max_message_size,
        idle_connection_timeout=options.idle_connection_timeout,
        body_timeout=options.body_timeout,
        max_pending=min(options.max_pending_connections, fd_limit - FD_RESERVE),
        max_pending_per_ip=options.max_pending_per_ip,
        ssl_context=ssl_context,
    )
    server.add_sockets(sockets)
    heartbeat = Heartbeat(hub)
    heartbeat.start()
    log.info(
        "WebSocket hub listening on %s (max_connections=%d, open-file limit %d, %s;"
        " node %s, %s broker; %s)",
        " and ".join(_url(sock, "https" if ssl_context else "http") for sock in sockets),
        hub.settings.max_connections,
        fd_limit,
        describe_writer(hub.write_batch),
        broker.node,
        broker.kind,
        describe_deployment(hub, api_keys),
    )
    if not handoff:
        log.info("hand-off off: every connection stays on Tornado's public WebSocket API")
    if ssl_context is not None:
        log.info("TLS on: https:// and wss://; TLS connections stay on Tornado's stream")
    else:
        log.info("TLS off: plain http:// and ws:// (see --certfile and --keyfile)")
    if hub.verifier is None:
        log.info("no token_secret or token_public_key: /ws is open to anyone who can connect")
    else:
        log.info("/ws requires connection tokens (%s)", ", ".join(hub.verifier.algorithms))
    log.info("backend API /api/: %s", "on" if api_keys else "off (no api_key)")
    if exporter is not None:
        exporter.start()
    log.info("metrics /metrics: %s", _describe_metrics(exporter, api_keys))

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()

    log.info("shutting down: closing %d connections", len(hub.peers))
    server.stop()
    heartbeat.stop()
    hub.close_all()
    if exporter is not None:
        exporter.stop()
    await _drain(server, diagnostics, timeout=3.0)
    stop = getattr(broker, "stop", None)
    if stop is not None:
        await stop()  # this node's members leave every room at once
    log.info("stopped")


def _describe_metrics(exporter: MetricsExporter | None, api_keys: tuple[str, ...]) -> str:
    if exporter is None:
        return "off" if metrics_available() else "off (pip install 'tornado-wshub[metrics]')"
    access = "the API key required" if api_keys else "open (no api_key)"
    workers = (
        f", every worker's summed (metrics in {exporter.directory})" if exporter.directory else ""
    )
    return f"on, {access}{workers}"


def metrics_option() -> bool:
    """``--metrics``, refused (as a start-up mistake) when prometheus_client is missing."""
    metrics = parse_switch("metrics", options.metrics)
    if metrics and not metrics_available():
        raise StartupError(
            "--metrics=on needs prometheus_client: pip install 'tornado-wshub[metrics]' "
            "(or start with --metrics=off)"
        )
    return metrics


async def _drain(server: HTTPServer, diagnostics: Diagnostics, timeout: float) -> None:
    """Give clients a moment to answer the close handshake, then cut the rest.

    Handed-off connections are not Tornado's any more, so besides its HTTP
    connections we wait for the server's ``open_sockets`` to reach zero.
    """
    deadline = asyncio.get_running_loop().time() + timeout

    async def handed_off_closed() -> None:
        while diagnostics.open_sockets > 0:
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(server.close_all_connections(), timeout)
        remaining = deadline - asyncio.get_running_loop().time()
        await asyncio.wait_for(handed_off_closed(), max(remaining, 0.01))
    except TimeoutError:
        log.warning(
            "%d closing handshakes still open after %.1fs; exiting anyway",
            diagnostics.open_sockets,
            timeout,
        )


def install_event_loop() -> str:
    """Use uvloop when installed (faster I/O), plain asyncio otherwise."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: list[str] | None = None) -> None:
    """The ``wshub`` command. A start-up mistake (unknown option, bad value, missing
    config file, port in use, an unsupported Tornado) prints one line to stderr and
    exits with status 2."""
    try:
        load_options(argv)
        log_format()
        allowed_origins = parse_origins(options.allowed_origins)
        handoff = parse_switch("handoff", options.handoff)
        compression = deflate_settings()
        allowed_hosts_option()  # a bad --allowed_hosts is a start-up mistake too
        verifier = token_verifier()
        api_keys = parse_api_keys(options.api_key)
        metrics = metrics_option()
        ssl_context = tls_context()
        try:
            self_check(handoff=handoff)
        except UnsupportedTornado as error:
            raise StartupError(str(error)) from None
        check_broker_options()
        if options.processes == 1:
            os.environ.pop(MULTIPROC_ENV, None)  # one process: its own registry
            sockets = listen(options.host, options.port)
        else:
            count = options.processes if options.processes > 0 else os.cpu_count() or 1
            if metrics:
                prepare_multiprocess()  # before the fork: every worker writes there
            port = run_workers(count, options.host, options.port)
            sockets = listen(options.host, port, reuse_port=True)
    except StartupError as exc:
        print(f"wshub: error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    keep_queries_out_of_logs()
    loop_name = install_event_loop()
    log.info("event loop: %s", loop_name)
    asyncio.run(
        serve(
            sockets,
            allowed_origins,
            handoff,
            compression,
            verifier,
            api_keys,
            metrics,
            ssl_context,
        )
    )


if __name__ == "__main__":
    main()
