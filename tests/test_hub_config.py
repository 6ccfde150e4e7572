"""What of the hub can be checked without starting it: one source for the course id and nbgrader's
config (course.toml -> hub, k8s values, Docker image), the YAML, the nbgitpuller links.
The hub itself runs in `make test-hub` (hub/tests/)."""

import json
import os
import re
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

import course
import hubctl
import stamp_badges
from course import ROOT


def test_course_id_is_read_from_course_toml():
    cid = course.course_id()
    assert hubctl.course_settings()["course_id"] == cid
    assert re.search(rf"^\[course\]\s*\nid = \"{cid}\"", (ROOT / "course.toml").read_text(), re.M)


def test_k8s_values_are_generated_from_the_tested_hubs_config():
    text = (ROOT / "hub" / "k8s" / "values.yaml").read_text()
    assert text == hubctl.k8s_values(), "hub/k8s/values.yaml is stale: run `make hub-k8s`"
    values = yaml.safe_load(text)
    cid, exchange = course.course_id(), course.hub_settings()["exchange"]
    assert set(values["hub"]["loadGroups"]) == {f"formgrade-{cid}", f"nbgrader-{cid}"}
    files = {f["mountPath"]: f["stringData"] for f in values["singleuser"]["extraFiles"].values()}
    expected = {f"{hubctl.K8S_ETC}/{rel}": body for rel, body in hubctl.etc_files(cid, exchange).items()}
    assert files == expected
    mounts = [m["mountPath"] for m in values["singleuser"]["storage"]["extraVolumeMounts"]]
    assert exchange in mounts, "the exchange volume must sit where nbgrader's config says"
    assert values["singleuser"]["extraEnv"]["JUPYTER_CONFIG_PATH"] == f"{hubctl.K8S_ETC}/common"
    assert f"formgrade-{cid}" in values["hub"]["extraConfig"]["course"]
    assert values["cull"]["enabled"] is True and values["singleuser"]["memory"]["limit"]
    compile(values["hub"]["extraConfig"]["course"], "extraConfig", "exec")
    for rel, body in hubctl.etc_files(cid, exchange).items():
        if rel.endswith(".json"):
            json.loads(body)
        else:
            compile(body, rel, "exec")


def test_nbgrader_hub_config_names_course_and_exchange():
    from traitlets.config import Config

    ns = {"get_config": Config}
    exec(hubctl.nbgrader_hub_config("matcalc", "/srv/x"), ns)
    assert ns["c"].CourseDirectory.course_id == "matcalc" and ns["c"].Exchange.root == "/srv/x"


def test_jupyterhub_config_takes_groups_and_paths_from_the_settings(tmp_path, monkeypatch):
    settings = {
        "venv": "/opt/v",
        "etc": "/e",
        "private": "/p",
        "proxy": "/chp",
        "port": 1,
        "hub_port": 2,
        "proxy_api_port": 3,
        "exchange": "/x",
        "course_id": course.course_id(),
        "instructors": ["i1"],
        "students": ["s1", "s2"],
    }
    (tmp_path / "hub.json").write_text(json.dumps(settings))
    monkeypatch.setenv("COURSE_HUB_SETTINGS", str(tmp_path / "hub.json"))
    c = PyFileConfigLoader("jupyterhub_config.py", path=str(ROOT / "hub")).load_config()
    cid = course.course_id()
    assert c.JupyterHub.load_groups == {
        f"formgrade-{cid}": {"users": ["i1"]},
        f"nbgrader-{cid}": {"users": ["s1", "s2"]},
    }
    assert c.Authenticator.allowed_users == {"i1", "s1", "s2"}
    assert c.JupyterHub.bind_url == "http://127.0.0.1:1" and c.JupyterHub.authenticator_class == "pam"
    assert c.Spawner.environment["JUPYTER_CONFIG_PATH"] == "/e/common"

    class Group:
        def __init__(self, name):
            self.name = name

    class Spawner:
        def __init__(self, groups):
            self.user = type("U", (), {"groups": [Group(g) for g in groups]})()
            self.environment = dict(c.Spawner.environment)

    teacher, student = Spawner([f"formgrade-{cid}"]), Spawner([f"nbgrader-{cid}"])
    c.Spawner.pre_spawn_hook(teacher)
    c.Spawner.pre_spawn_hook(student)
    assert teacher.environment["JUPYTER_CONFIG_PATH"] == f"/e/instructor{os.pathsep}/e/common"
    assert student.environment["JUPYTER_CONFIG_PATH"] == "/e/common"


def test_dockerfile_installs_what_the_tested_hub_installs():
    text = (ROOT / "hub" / "Dockerfile").read_text()
    hub_mk = (ROOT / "hub" / "hub.mk").read_text()
    assert re.search(r"^FROM python:3\.11[-\w.]*$", text, re.M), "Python 3.11, as environment.yml"
    for needle in [
        "-r /tmp/course/requirements.txt",
        "COPY requirements.txt",
        "COPY utils",
        "hubctl.py --venv /usr/local roles",
    ]:
        assert needle in text, needle
    assert "-r requirements.txt" in hub_mk and "hubctl.py --venv $(HUB_VENV) roles" in hub_mk


def test_proxy_is_pinned():
    pkg = json.loads((ROOT / "hub" / "proxy" / "package.json").read_text())
    lock = json.loads((ROOT / "hub" / "proxy" / "package-lock.json").read_text())
    version = pkg["dependencies"]["configurable-http-proxy"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert lock["packages"]["node_modules/configurable-http-proxy"]["version"] == version
    assert "hub/proxy/node_modules/" in (ROOT / ".gitignore").read_text()


def test_nbgitpuller_link_opens_the_notebook_from_the_public_repo():
    nb = course.lecture_notebooks()[0]
    url = course.nbgitpuller_url(nb, "https://hub.example.org/")
    u = urlparse(url)
    assert (u.scheme, u.netloc, u.path) == ("https", "hub.example.org", "/hub/user-redirect/git-pull")
    q = {k: v[0] for k, v in parse_qs(u.query).items()}
    s = course.settings()
    assert q["repo"] == f"https://github.com/{s['slug']}" and q["branch"] == s["branch"]
    name = s["slug"].split("/")[1]
    assert q["urlpath"] == f"lab/tree/{name}/lectures/{nb.name}"
    assert (ROOT / q["urlpath"].split("/", 3)[3]).exists()


def test_hub_link_is_stamped_on_lectures_only_when_a_hub_is_configured(monkeypatch):
    lecture, solution = course.lecture_notebooks()[0], course.source_notebooks()[0]
    assert "JupyterHub" not in stamp_badges.badge_source(lecture) or course.hub_settings()["url"]
    monkeypatch.setattr(stamp_badges, "hub_settings", lambda: {"url": "https://hub.example.org", "exchange": "/x"})
    monkeypatch.setattr(course, "hub_settings", lambda: {"url": "https://hub.example.org", "exchange": "/x"})
    badge = stamp_badges.badge_source(lecture)
    assert badge.startswith("[![Open In Colab]") and "[Open on your JupyterHub](https://hub.example.org/hub/" in badge
    assert "JupyterHub" not in stamp_badges.badge_source(solution), "assignments come through the exchange"


@pytest.mark.parametrize(
    "toml, message",
    [
        ('[hub]\nurl = "hub.example.org"\nexchange = "/x"\n', "http"),
        ('[hub]\nurl = ""\nexchange = "relative"\n', "absolute"),
    ],
)
def test_bad_hub_settings_are_named(tmp_path, monkeypatch, toml, message):
    (tmp_path / "course.toml").write_text(toml)
    monkeypatch.setattr(course, "ROOT", tmp_path)
    with pytest.raises(ValueError, match=message):
        course.hub_settings()


def test_bad_course_id_is_named(tmp_path, monkeypatch):
    (tmp_path / "course.toml").write_text('[course]\nid = "My Course"\n')
    monkeypatch.setattr(course, "ROOT", tmp_path)
    with pytest.raises(ValueError, match=r"\[course\] id"):
        course.course_id()
