"""Fixtures shared by every test directory: the real-container test bed and the Kubernetes
API test double."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if p not in sys.path:
        sys.path.insert(0, p)

from testbed.image import build_image_with_programs  # noqa: E402
from testbed.kube_double import KubeDouble  # noqa: E402
from testbed.runc import Container  # noqa: E402


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


@pytest.fixture
def kube(tmp_path):
    """A kube-apiserver double on loopback, and a kubeconfig pointing at it."""
    k = KubeDouble(bookmark_interval=0.5).start()
    k.kubeconfig = k.write_kubeconfig(str(tmp_path / "kubeconfig"))
    yield k
    k.stop()
