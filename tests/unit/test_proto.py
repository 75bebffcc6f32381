"""The generated gRPC code is what scripts/gen_proto.sh makes from proto/ today."""
import filecmp
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generated_code_is_current(tmp_path):
    subprocess.run([os.path.join(ROOT, "scripts", "gen_proto.sh"), str(tmp_path)], check=True,
                   cwd=ROOT)
    for name in ("alerts_pb2.py", "alerts_pb2_grpc.py"):
        fresh = tmp_path / "mamori" / "v1" / name
        committed = os.path.join(ROOT, "agent", "api", "gen", "mamori", "v1", name)
        assert filecmp.cmp(fresh, committed, shallow=False), \
            f"{committed} is stale: run scripts/gen_proto.sh (make proto)"
