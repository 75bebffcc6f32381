"""Fixtures shared by every test directory: the real-container test bed and the Kubernetes
API test double."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if p not in sys.path:
        sys.path.insert(0, p)

from testbed import runc  # noqa: E402
from testbed.debian import build_debian_image  # noqa: E402
from testbed.image import build_image_with_programs  # noqa: E402
from testbed.kube_double import KubeDouble  # noqa: E402
from testbed.runc import Container  # noqa: E402

# this test process's containers, apart from any other's (testbed/runc.py says why). Made
# now, before any agent starts: a watched parent that exists is covered in the kernel from
# a container's first instruction; one made later only once the agent has seen it made.
runc.CGROUP_PARENT = f"mamori-t{os.getpid()}"
try:
    from agent.sensor import cgroups as _cgroups
    os.makedirs(os.path.join(_cgroups.cgroup2_root(), runc.CGROUP_PARENT), exist_ok=True)
except OSError:
    pass                      # not root, or no cgroup2 here: the tests that need it say so


@pytest.fixture(scope="session", autouse=True)
def _own_cgroup_parent():
    yield
    from agent.sensor import cgroups
    try:
        os.rmdir(os.path.join(cgroups.cgroup2_root(), runc.CGROUP_PARENT))
    except OSError:
        pass                  # not made, or a container left in it (its test says so)


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    """The test image's root filesystem: busybox-static and its applets, and the static
    test helper `probe` (tests/helpers/probe.c) at /usr/local/bin/probe."""
    return build_image_with_programs(str(tmp_path_factory.mktemp("image")), {})


@pytest.fixture
def containers(image, tmp_path_factory):
    """A factory of real runc containers; all of them are stopped and removed after the
    test, also when it fails."""
    made = []
    workdir = str(tmp_path_factory.mktemp("containers"))

    def make(**kw) -> Container:
        c = Container(image, workdir, **kw)
        made.append(c)
        return c.start()
    yield make
    for c in made:
        c.stop()


@pytest.fixture(scope="session")
def debian_image():
    """A real Debian 12 image's root filesystem, built from Debian packages and cached
    between runs (tests/testbed/debian.py): bash, python3, curl, wget, nginx, cron, sudo…,
    the user `app` (uid 1000) and `probe` at /usr/local/bin/probe."""
    return build_debian_image()


@pytest.fixture
def debian_containers(debian_image, tmp_path_factory):
    """A factory of real runc containers of the Debian image, like `containers`. `layers`:
    folders laid over the image as its upper image layers, top first — an application
    image built on Debian, whose files are the image's, not drift. All of them are stopped
    and removed after the test, also when it fails."""
    made = []
    workdir = str(tmp_path_factory.mktemp("debian-containers"))

    def make(*, layers: tuple[str, ...] = (), **kw) -> Container:
        c = Container(":".join([*layers, debian_image]), workdir, **kw)
        made.append(c)
        return c.start()
    yield make
    for c in made:
        c.stop()


@pytest.fixture
def kube(tmp_path):
    """A kube-apiserver double on loopback, and a kubeconfig pointing at it."""
    k = KubeDouble(bookmark_interval=0.5).start()
    k.kubeconfig = k.write_kubeconfig(str(tmp_path / "kubeconfig"))
    yield k
    k.stop()
