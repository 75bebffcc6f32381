"""Fixtures shared by every test directory: the real-container test bed and the Kubernetes
API test double."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if p not in sys.path:
        sys.path.insert(0, p)

from testbed.image import build_image  # noqa: E402
from testbed.kube_double import KubeDouble  # noqa: E402
from testbed.runc import Container  # noqa: E402


HELPERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers")


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    """The test image's root filesystem: busybox-static and its applets, and the static
    test helper `probe` (tests/helpers/probe.c) at /usr/local/bin/probe."""
    import subprocess
    root = tmp_path_factory.mktemp("image")
    probe = str(root / "probe")
    subprocess.run(["gcc", "-static", "-O2", "-o", probe,
                    os.path.join(HELPERS, "probe.c")], check=True)
    return build_image(str(root), helpers={"/usr/local/bin/probe": probe})


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


@pytest.fixture
def kube(tmp_path):
    """A kube-apiserver double on loopback, and a kubeconfig pointing at it."""
    k = KubeDouble(bookmark_interval=0.5).start()
    k.kubeconfig = k.write_kubeconfig(str(tmp_path / "kubeconfig"))
    yield k
    k.stop()
