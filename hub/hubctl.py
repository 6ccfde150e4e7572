"""Run the course's JupyterHub on one machine: users, roles, the hub itself. Needs root.

    hubctl.py --venv V roles                     nbgrader's instructor extensions off for everyone
                                                 in venv V (instructors get them back at spawn)
    hubctl.py --venv V --state S users [--prefix P] [--students N]
                                                 Linux users (passwords printed), the instructor's
                                                 course folder, the roster S/roster.json
    hubctl.py --venv V --state S run --proxy CHP [--port N] [--exchange DIR]
                                                 JupyterHub in the foreground (Ctrl-C stops it all)
    hubctl.py --venv V --state S remove-users    delete the roster's users and their homes

`make hub-users`, `make hub` and `make hub-remove-users` call it (hub/hub.mk); the end-to-end test
(hub/tests/) uses the same functions with throw-away users, folders and ports. The course id and
the exchange come from course.toml; jupyterhub_config.py reads everything else from S/hub.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

HUB = Path(__file__).resolve().parent
ROOT = HUB.parent
# What an instructor's course folder holds: the course minus hub/, tests, lectures and state.
COURSE_PARTS = [
    "solutions",
    "assignments",
    "grading",
    "utils",
    "course.toml",
    "Makefile",
    "requirements.txt",
    "environment.yml",
]
COURSE_IGNORE = shutil.ignore_patterns(
    ".ipynb_checkpoints",
    "__pycache__",
    "*.pyc",
    "*.db",
    "submitted",
    "autograded",
    "feedback",
    "reports",
    ".work",
    "release_solutions",
    "*.egg-info",
    "tests",
)
# The instructor-only parts of nbgrader (students keep Assignment List and Validate).
INSTRUCTOR_PLUGINS = [
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:course-list",
]
INSTRUCTOR_SERVER_EXTENSIONS = ["nbgrader.server_extensions.formgrader", "nbgrader.server_extensions.course_list"]


def course_settings(root: Path = ROOT) -> dict:
    """[course] id and [hub] exchange of course.toml (the one source; scripts/course.py checks them)."""
    with open(root / "course.toml", "rb") as fh:
        toml = tomllib.load(fh)
    return {"course_id": toml["course"]["id"], "exchange": toml["hub"]["exchange"]}


def groups(course_id: str) -> tuple[str, str]:
    """JupyterHub groups of nbgrader's docs: instructors, students."""
    return f"formgrade-{course_id}", f"nbgrader-{course_id}"


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


# --------------------------------------------------------------------------------------------
# roles: who sees which nbgrader extension


def cmd_roles(venv: Path) -> None:
    """Instructor-only extensions off and locked at the venv level: a student's Nbgrader menu has
    Assignment List only and /formgrader answers 404. Instructors get them back from the config
    folder the hub puts first on their JUPYTER_CONFIG_PATH (write_etc)."""
    jupyter = venv / "bin" / "jupyter"
    # `disable` locks only the first plugin it disables (JupyterLab >= 4.1): lock them all explicitly
    for verb in ("disable", "lock"):
        sh(
            jupyter,
            "labextension",
            verb,
            "--level=sys_prefix",
            *INSTRUCTOR_PLUGINS,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    sh(
        jupyter,
        "server",
        "extension",
        "disable",
        "--sys-prefix",
        *INSTRUCTOR_SERVER_EXTENSIONS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def etc_files(course_id: str, exchange: str) -> dict[str, str]:
    """Jupyter config the hub hands to single-user servers, by path under the config folder.

    common/      everyone: course id + exchange (nbgrader_config.py), no news / update checks
    instructor/  first on instructors' JUPYTER_CONFIG_PATH: formgrader, course list and
                 create-assignment on; the formgrader may be framed by Lab (jupyterhub-singleuser
                 sends frame-ancestors 'none'); the course config ~/<course_id>/grading/nbgrader_config.py
    The same files go into hub/k8s/values.yaml (`make hub-k8s`; tests/test_hub_config.py).
    """

    def js(obj):
        return json.dumps(obj, indent=1) + "\n"

    return {
        "common/nbgrader_config.py": nbgrader_hub_config(course_id, exchange),
        "common/jupyter_server_config.json": js(
            {"LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}}
        ),
        "instructor/labconfig/page_config.json": js({"disabledExtensions": {p: False for p in INSTRUCTOR_PLUGINS}}),
        "instructor/jupyter_server_config.d/nbgrader-instructor.json": js(
            {"ServerApp": {"jpserver_extensions": {e: True for e in INSTRUCTOR_SERVER_EXTENSIONS}}}
        ),
        "instructor/jupyter_server_config.json": js(
            {"ServerApp": {"tornado_settings": {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}}}
        ),
        "instructor/nbgrader_config.py": (
            "# The instructor's course folder: a copy of the course repository (hubctl.py users).\n"
            "import os\n"
            f"course_config = os.path.expanduser('~/{course_id}/grading/nbgrader_config.py')\n"
            "if os.path.exists(course_config):\n"
            "    load_subconfig(course_config)  # noqa: F821 (traitlets)\n"
        ),
    }


def write_etc(etc: Path, course_id: str, exchange: Path) -> None:
    """etc_files() into `etc` (root-owned, world-readable)."""
    for rel, text in etc_files(course_id, str(exchange)).items():
        (etc / rel).parent.mkdir(parents=True, exist_ok=True)
        (etc / rel).write_text(text)
    sh("chmod", "-R", "a+rX", etc)


def nbgrader_hub_config(course_id: str, exchange: str) -> str:
    """The nbgrader settings every hub user shares: the same text goes into hub/k8s/values.yaml
    (tests/test_hub_config.py checks it)."""
    return (
        "# Generated from course.toml by hub/hubctl.py: every hub user's nbgrader reads it.\n"
        "c = get_config()  # noqa: F821\n"
        f"c.CourseDirectory.course_id = {course_id!r}\n"
        f"c.Exchange.root = {exchange!r}\n"
    )


K8S = HUB / "k8s"
K8S_ETC = "/etc/jupyter/course"


def k8s_values(root: Path = ROOT) -> str:
    """hub/k8s/values.yaml from its template, course.toml and etc_files() (`make hub-k8s`)."""
    course = course_settings(root)
    files = []
    for rel, text in etc_files(course["course_id"], course["exchange"]).items():
        key = rel.replace("/", "-").replace("_", "-").replace(".", "-")
        body = "".join(f"        {line}\n" if line else "\n" for line in text.splitlines())
        files.append(f"    {key}:\n      mountPath: {K8S_ETC}/{rel}\n      stringData: |\n{body}")
    out = (K8S / "values.yaml.in").read_text()
    for key, value in [
        ("@FILES@\n", "".join(files)),
        ("@COURSE_ID@", course["course_id"]),
        ("@EXCHANGE@", course["exchange"]),
        ("@ETC@", K8S_ETC),
    ]:
        out = out.replace(key, value)
    return out


def make_exchange(exchange: Path) -> None:
    """nbgrader's docs: the exchange is writable by everyone, sticky (mode 1777)."""
    exchange.mkdir(parents=True, exist_ok=True)
    os.chown(exchange, 0, 0)
    os.chmod(exchange, 0o1777)


# --------------------------------------------------------------------------------------------
# users


def create_user(name: str, password: str, reuse: bool = False) -> None:
    """A Linux user whose home only they can enter (Debian makes 0755 homes: others could read
    submissions, caches with submission secrets, an instructor's solutions). An existing account is
    never taken over unless `reuse` (it is one of ours: in the roster)."""
    try:
        pwd.getpwnam(name)
        if not reuse:
            raise SystemExit(f"user {name!r} exists and is not one of the hub's: pick another prefix")
    except KeyError:
        sh("useradd", "--create-home", "--shell", "/bin/bash", "-K", "HOME_MODE=0700", name)
    home = pwd.getpwnam(name).pw_dir
    os.chmod(home, 0o700)
    sh("chpasswd", input=f"{name}:{password}\n".encode())


def delete_user(name: str) -> None:
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    kill_processes({uid}, only_hub=False)
    subprocess.run(["userdel", "--remove", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def install_course(instructor: str, course_id: str, root: Path = ROOT) -> Path:
    """The instructor's course folder ~/<course_id>: solutions, releases, grading code and config,
    owned by them. Formgrader lists the assignments of solutions/; the gradebook is made on first
    use (`make autograde` records an assignment from its source when it is missing)."""
    home = Path(pwd.getpwnam(instructor).pw_dir)
    dest = home / course_id
    dest.mkdir(exist_ok=True)
    for part in COURSE_PARTS:
        src = root / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=COURSE_IGNORE, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, dest / part)
    sh("chown", "-R", f"{instructor}:", dest)
    return dest


def cmd_users(state: Path, prefix: str, n_students: int, root: Path = ROOT) -> dict:
    course = course_settings(root)
    instructors = [f"{prefix}instructor"]
    students = [f"{prefix}student{k}" for k in range(1, n_students + 1)]
    passwords = {u: secrets.token_urlsafe(9) for u in instructors + students}
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o711)
    ours = set()
    if (state / "roster.json").exists():
        old = read_roster(state)
        ours = set(old["instructors"] + old["students"])
    for user, pw in passwords.items():
        create_user(user, pw, reuse=user in ours)
    etc = state / "etc"
    write_etc(etc, course["course_id"], Path(course["exchange"]))
    for user in instructors:
        install_course(user, course["course_id"], root)
    roster = {"instructors": instructors, "students": students}
    write_private(state / "roster.json", json.dumps(roster, indent=1))
    write_private(state / "passwords.txt", "".join(f"{u} {p}\n" for u, p in passwords.items()))
    return {**roster, "passwords": passwords}


def write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_roster(state: Path) -> dict:
    path = state / "roster.json"
    if not path.exists():
        raise SystemExit(f"{path}: no roster: run `make hub-users` first")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------------------------
# run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hub_settings(venv: Path, state: Path, proxy: Path, port: int, exchange: Path, roster: dict, course_id: str) -> dict:
    private = state / "private"  # database and cookie secret: root only
    private.mkdir(parents=True, exist_ok=True)
    os.chmod(private, 0o700)
    return {
        "venv": str(venv),
        "etc": str(state / "etc"),
        "private": str(private),
        "proxy": str(proxy),
        "port": port,
        "hub_port": free_port(),
        "proxy_api_port": free_port(),
        "exchange": str(exchange),
        "course_id": course_id,
        **roster,
    }


def start_hub(venv: Path, state: Path, settings: dict, log) -> subprocess.Popen:
    """JupyterHub in its own process group (stop_hub ends it and what it started)."""
    write_private(state / "hub.json", json.dumps(settings, indent=1))
    env = {
        **os.environ,
        "COURSE_HUB_SETTINGS": str(state / "hub.json"),
        "PATH": f"{venv}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    return subprocess.Popen(
        [venv / "bin" / "jupyterhub", "-f", HUB / "jupyterhub_config.py"],
        cwd=settings["private"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyterhub exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/hub/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"jupyterhub did not answer {url}/hub/health in {timeout:.0f} s")
        time.sleep(0.3)


def hub_processes(uids: set[int], only_hub: bool = True) -> list[int]:
    """PIDs owned by `uids`; with only_hub, those a hub spawner started (they carry
    JUPYTERHUB_API_TOKEN in their environment: single-user servers, their kernels, terminals)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid not in uids:
                continue
            if only_hub:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    if b"JUPYTERHUB_API_TOKEN=" not in fh.read():
                        continue
            pids.append(int(entry))
        except OSError:
            continue
    return pids


def kill_processes(uids: set[int], only_hub: bool = True, grace: float = 10) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = hub_processes(uids, only_hub)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
            time.sleep(0.2)
        if not pids:
            return


def stop_hub(proc: subprocess.Popen, users: list[str], grace: float = 60) -> None:
    """SIGTERM to the hub (it stops the proxy and every single-user server), then its process group,
    then whatever a spawner started that is still alive."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the proxy, should the hub have died first
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
    uids = set()
    for user in users:
        try:
            uids.add(pwd.getpwnam(user).pw_uid)
        except KeyError:
            pass
    kill_processes(uids)


def readable_by_others(path: Path) -> bool:
    """Can a user other than the owner read `path`? (every parent traversable, path readable)"""
    p = path.resolve()
    for parent in [*reversed(p.parents), p]:
        if not parent.stat().st_mode & 0o001:
            return False
    return bool(p.stat().st_mode & 0o004)


def cmd_run(venv: Path, state: Path, proxy: Path, port: int | None, exchange: Path | None) -> int:
    course = course_settings()
    exchange = exchange or Path(course["exchange"])
    roster = read_roster(state)
    if readable_by_others(ROOT / "solutions"):
        print(
            f"WARNING: {ROOT}/solutions is readable by every user of this machine, hub students "
            f"included: `chmod 700 {ROOT}` (or keep the repository under a private home).",
            file=sys.stderr,
        )
    make_exchange(exchange)
    write_etc(state / "etc", course["course_id"], exchange)
    settings = hub_settings(venv, state, proxy.resolve(), port or free_port(), exchange, roster, course["course_id"])
    url = f"http://127.0.0.1:{settings['port']}"
    print(
        f"JupyterHub for course {course['course_id']!r}: {url}  (log below; Ctrl-C stops the hub, "
        f"its proxy and every user's server)\nusers and passwords: {state}/passwords.txt; "
        f"exchange: {exchange}",
        flush=True,
    )
    proc = start_hub(venv, state, settings, None)
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        wait_healthy(url, proc)
        print(f"\n  ready: open {url} and log in (users: {state}/passwords.txt)\n", flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        print("\nstopping the hub, its proxy and the users' servers …", file=sys.stderr, flush=True)
        return 0
    finally:
        stop_hub(proc, roster["instructors"] + roster["students"])
        print("hub stopped", file=sys.stderr, flush=True)


def cmd_remove_users(state: Path) -> None:
    roster = read_roster(state)
    for user in roster["instructors"] + roster["students"]:
        delete_user(user)
        print(f"removed {user}")
    (state / "roster.json").unlink()
    (state / "passwords.txt").unlink(missing_ok=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", type=Path, required=True)
    ap.add_argument("--state", type=Path, default=Path("/var/lib/course-hub"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("roles")
    p = sub.add_parser("users")
    p.add_argument("--prefix", default="demo-")
    p.add_argument("--students", type=int, default=2)
    p = sub.add_parser("run")
    p.add_argument("--proxy", type=Path, required=True)
    p.add_argument("--port", type=int)
    p.add_argument("--exchange", type=Path)
    sub.add_parser("remove-users")
    sub.add_parser("k8s", help="write hub/k8s/values.yaml (no root needed)")
    args = ap.parse_args(argv)
    if args.cmd == "k8s":
        (K8S / "values.yaml").write_text(k8s_values())
        print(f"wrote {K8S / 'values.yaml'}")
        return 0
    if os.geteuid() != 0:
        print("hubctl: needs root (Linux users, servers run as them)", file=sys.stderr)
        return 2
    if args.cmd == "roles":
        cmd_roles(args.venv)
    elif args.cmd == "users":
        made = cmd_users(args.state, args.prefix, args.students)
        for user, pw in made["passwords"].items():
            role = "instructor" if user in made["instructors"] else "student"
            print(f"{role:10s} {user:24s} password {pw}")
        print(f"(also in {args.state}/passwords.txt, root only)")
    elif args.cmd == "run":
        return cmd_run(args.venv, args.state, args.proxy, args.port, args.exchange)
    elif args.cmd == "remove-users":
        cmd_remove_users(args.state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
