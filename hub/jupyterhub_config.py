"""JupyterHub configuration of the course on one machine (`make hub`; hub/README.md).

Started by hub/hubctl.py, which writes the settings file named by $COURSE_HUB_SETTINGS (ports found
free at run time, the roster of `make hub-users`, the course id from course.toml, folders).
Real Linux users log in with their passwords (PAM); each gets a single-user JupyterLab started as
that user (LocalProcessSpawner). Roles are JupyterHub groups, as nbgrader's docs describe:
formgrade-<course> (instructors: Formgrader, Courses, Create Assignment) and nbgrader-<course>
(students: the Assignments tab and Validate only).
"""

import json
import os

c = get_config()  # noqa: F821 (injected by traitlets)
S = json.load(open(os.environ["COURSE_HUB_SETTINGS"]))
COURSE = S["course_id"]
INSTRUCTORS, STUDENTS = S["instructors"], S["students"]

# Loopback only, every port found free by hubctl.py. Put a TLS-terminating proxy in front to open it up.
c.JupyterHub.bind_url = f"http://127.0.0.1:{S['port']}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = S["hub_port"]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{S['proxy_api_port']}"
c.ConfigurableHTTPProxy.command = [S["proxy"]]  # npm, hub/proxy/node_modules (no global install)
c.JupyterHub.db_url = f"sqlite:///{S['private']}/jupyterhub.sqlite"  # root-only folder
c.JupyterHub.cookie_secret_file = f"{S['private']}/jupyterhub_cookie_secret"
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every user's server

c.JupyterHub.authenticator_class = "pam"
c.Authenticator.allowed_users = set(INSTRUCTORS + STUDENTS)
c.JupyterHub.load_groups = {f"formgrade-{COURSE}": {"users": INSTRUCTORS}, f"nbgrader-{COURSE}": {"users": STUDENTS}}

# Optional service that may start and stop servers (the end-to-end test starts them ahead of logins).
if S.get("service_token"):
    c.JupyterHub.services = [{"name": "course-hub-admin", "api_token": S["service_token"]}]
    c.JupyterHub.load_roles = [
        {"name": "course-hub-admin", "scopes": ["admin:servers", "read:users"], "services": ["course-hub-admin"]}
    ]

c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [f"{S['venv']}/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
# A loaded 2-core machine may take a while to start a server.
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
c.Spawner.environment = {
    "PATH": f"{S['venv']}/bin:/usr/local/bin:/usr/bin:/bin",  # nbgrader runs `alembic` by name
    "JUPYTER_CONFIG_PATH": f"{S['etc']}/common",  # course id, exchange (hubctl.write_etc)
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",  # many kernels share few cores
}


def pre_spawn_hook(spawner):
    """Instructors get one more Jupyter config folder, first: nbgrader's instructor extensions."""
    if any(g.name == f"formgrade-{COURSE}" for g in spawner.user.groups):
        spawner.environment = dict(
            spawner.environment, JUPYTER_CONFIG_PATH=f"{S['etc']}/instructor{os.pathsep}{S['etc']}/common"
        )


c.Spawner.pre_spawn_hook = pre_spawn_hook
