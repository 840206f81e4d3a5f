#!/usr/bin/env python3
"""The Tandem VM lab: boots build/tandem.img under QEMU on bridges inside a network namespace.

  scripts/vm-lab.py pair    two VMs (A, B) and a client, until Ctrl-C   (make vm-pair)
  scripts/vm-lab.py test    the phase-1 acceptance test                 (make vm-test)

Layout (every name carries this run's tag, tdm<pid>, and is deleted on exit, Ctrl-C included):

  namespace <tag>-lan: bridge br-mgmt (management 10.77.0.0/24), bridge br-data (data 10.77.1.0/24,
      multicast snooping off so VRRP's 224.0.0.18 floods), one tap per VM NIC
      (VM eth0 -> brm, eth1 -> brd)
  namespace <tag>-cli: the client/admin host, 10.77.0.100 (mgmt) and 10.77.1.100 (data)
  namespace <tag>-srv: a backend server, 10.77.1.200:8080

Serial consoles are unix sockets (build/vm/<tag>/<vm>.serial) with a log file beside them;
the host's own interfaces and routes are never touched. Runs as root. Python stdlib only.
"""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, "build")
TAG = "tdm%d" % os.getpid()
LAN, CLI, SRV = TAG + "-lan", TAG + "-cli", TAG + "-srv"
MGMT_NET, DATA_NET = "10.77.0", "10.77.1"
PASSWORD = "Rack-42-Blue"
MEMORY_MB = int(os.environ.get("TANDEM_VM_MEMORY", "256"))
PAIR_SECONDS = int(os.environ.get("TANDEM_VM_PAIR_SECONDS", "0"))  # 0: until Ctrl-C


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def sh(*argv, check=True, ns=None, capture=False, timeout=60):
    if ns:
        argv = ("ip", "netns", "exec", ns) + argv
    r = subprocess.run(argv, check=False, timeout=timeout,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(argv), r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace") if capture else r.returncode


def accel():
    """KVM where it works; TCG where it does not (nested virtualisation hangs the kernel)."""
    forced = os.environ.get("TANDEM_VM_ACCEL")
    if forced:
        return forced
    try:
        nested = " hypervisor " in " " + open("/proc/cpuinfo").read().replace("\n", " ") + " "
    except OSError:
        nested = True
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and not nested:
        return "kvm"
    return "tcg"


class Console:
    """A serial console: everything the VM printed, and expect/send on it."""

    def __init__(self, path):
        self.path = path
        self.buf, self.pos = "", 0
        self.sock = None

    def connect(self, timeout=20):
        end = time.time() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.path)
                s.setblocking(False)
                self.sock = s
                return
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.1)

    def pump(self, wait):
        try:
            import select
            r, _, _ = select.select([self.sock], [], [], wait)
            if r:
                data = self.sock.recv(65536)
                if data:
                    self.buf += data.decode(errors="replace")
        except OSError:
            time.sleep(wait)

    def expect(self, pattern, timeout=60):
        """Waits for `pattern` (a regex) after the last match; returns the match."""
        rx = re.compile(pattern)
        end = time.time() + timeout
        while True:
            m = rx.search(self.buf, self.pos)
            if m:
                self.pos = m.end()
                return m
            if time.time() > end:
                tail = self.buf[-1500:]
                raise TimeoutError("no %r within %ss; console ends with:\n%s" % (pattern, timeout, tail))
            self.pump(0.2)

    def send(self, line):
        self.sock.sendall((line + "\r").encode())

    def answer(self, prompt, line, timeout=30):
        self.expect(prompt, timeout)
        time.sleep(0.05)
        self.send(line)

    def skip(self):
        """Forgets what was printed so far (the next expect looks at new output only)."""
        self.pump(0.1)
        self.pos = len(self.buf)


class Lab:
    def __init__(self):
        self.dir = os.path.join(BUILD, "vm", TAG)
        os.makedirs(self.dir, exist_ok=True)
        self.vms = {}
        self.helpers = []
        self.namespaces = []
        self.accel = accel()
        atexit.register(self.cleanup)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        log("signal %d: cleaning up" % signum)
        sys.exit(128 + signum)

    def cleanup(self):
        for name in list(self.vms):
            self.stop_vm(name)
        for p in self.helpers:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.helpers = []
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        self.namespaces = []

    def netns(self, name):
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "link", "set", "lo", "up", ns=name)

    def network(self):
        self.netns(LAN)
        self.netns(CLI)
        self.netns(SRV)
        for br in ("br-mgmt", "br-data"):
            sh("ip", "link", "add", br, "type", "bridge", "mcast_snooping", "0", "stp_state", "0", ns=LAN)
            sh("ip", "link", "set", "dev", br, "type", "bridge", "forward_delay", "0", ns=LAN)
            sh("ip", "link", "set", "dev", br, "up", ns=LAN)
        # The client: eth0 on management, eth1 on data. The server: eth0 on data.
        for (peer_ns, ifname, br, addr) in ((CLI, "eth0", "br-mgmt", MGMT_NET + ".100/24"),
                                            (CLI, "eth1", "br-data", DATA_NET + ".100/24"),
                                            (SRV, "eth0", "br-data", DATA_NET + ".200/24")):
            host_side = "v%s%s" % (peer_ns[-3:], ifname[-1])
            sh("ip", "link", "add", host_side, "type", "veth", "peer", "name", ifname, "netns", peer_ns, ns=LAN)
            sh("ip", "link", "set", "dev", host_side, "master", br, "up", ns=LAN)
            sh("ip", "addr", "add", addr, "dev", ifname, ns=peer_ns)
            sh("ip", "link", "set", "dev", ifname, "up", ns=peer_ns)

    def helper(self, ns, *argv, cwd=None):
        p = subprocess.Popen(("ip", "netns", "exec", ns) + argv, cwd=cwd,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.helpers.append(p)
        return p

    def disk(self, name, image=None):
        path = os.path.join(self.dir, name + ".img")
        shutil.copyfile(image or os.path.join(BUILD, "tandem.img"), path)
        return path

    def start_vm(self, name, index, disk, memory=MEMORY_MB, connect=True):
        for n, br in (("m", "br-mgmt"), ("d", "br-data")):
            tap = "tap-%s-%s" % (name, n)
            if sh("ip", "link", "show", "dev", tap, ns=LAN, check=False) != 0:
                sh("ip", "tuntap", "add", "dev", tap, "mode", "tap", ns=LAN)
                sh("ip", "link", "set", "dev", tap, "master", br, "up", ns=LAN)
        serial = os.path.join(self.dir, name + ".serial")
        monitor = os.path.join(self.dir, name + ".monitor")
        logfile = os.path.join(self.dir, name + ".console.log")
        argv = [
            "qemu-system-x86_64", "-name", "tandem-" + name, "-accel", self.accel,
            "-m", str(memory), "-smp", "1", "-no-user-config", "-nodefaults",
            "-drive", "file=%s,format=raw,if=virtio" % disk,
            "-netdev", "tap,id=m,ifname=tap-%s-m,script=no,downscript=no" % name,
            "-device", "virtio-net-pci,netdev=m,mac=52:54:00:77:%02x:00,addr=0x4,romfile=" % index,
            "-netdev", "tap,id=d,ifname=tap-%s-d,script=no,downscript=no" % name,
            "-device", "virtio-net-pci,netdev=d,mac=52:54:00:77:%02x:01,addr=0x5,romfile=" % index,
            "-device", "i6300esb", "-action", "watchdog=reset",
            "-chardev", "socket,id=ser,path=%s,server=on,wait=off,logfile=%s,logappend=on" % (serial, logfile),
            "-serial", "chardev:ser",
            "-monitor", "unix:%s,server=on,wait=off" % monitor,
            "-vga", "std", "-display", "none",
        ]
        if self.accel == "kvm":
            argv += ["-cpu", "host"]
        # TANDEM_VM_NICE=-10 gives QEMU precedence on a machine busy with other work, so that
        # boot figures approach an idle machine's.
        nice = os.environ.get("TANDEM_VM_NICE")
        if nice:
            argv = ["nice", "-n", nice] + argv
        proc = subprocess.Popen(["ip", "netns", "exec", LAN] + argv,
                                stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, name + ".qemu.log"), "a"))
        con = Console(serial)
        if connect:
            con.connect()
        self.vms[name] = (proc, con, monitor)
        return con

    def stop_vm(self, name):
        proc, con, monitor = self.vms.pop(name)
        if proc.poll() is None:
            try:
                m = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                m.connect(monitor)
                m.sendall(b"quit\n")
                m.close()
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        if con.sock:
            con.sock.close()


def serve_files(lab, directory):
    """An HTTP server in the client namespace, on the management side: the box fetches files."""
    lab.helper(CLI, sys.executable, "-m", "http.server", "8000", "--bind", MGMT_NET + ".100", cwd=directory)


def curl(ns, url, timeout=2):
    r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "-k", "-m", str(timeout), "-o", "-",
                        "-w", "\n%{http_code}", url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = r.stdout.decode(errors="replace")
    body, _, code = out.rpartition("\n")
    return r.returncode, code, body


def cpu_seconds(proc):
    """CPU time QEMU has used: the boot's cost whatever else the machine is doing."""
    try:
        st = open("/proc/%d/stat" % proc.pid).read().rsplit(")", 1)[1].split()
        return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def load_average():
    return float(open("/proc/loadavg").read().split()[0])


def wait_served(expect_body, timeout):
    end = time.time() + timeout
    while time.time() < end:
        rc, code, body = curl(CLI, "http://%s.10/marker.txt" % DATA_NET, 1)
        if rc == 0 and code == "200" and expect_body in body:
            return True
        time.sleep(0.25)
    return False


# ---------------------------------------------------------------------------------------
# The wizard and the console, by script.

def run_wizard(con, hostname, mgmt, data, role="standalone"):
    con.answer(r"Press Enter to start the first-boot setup", "", timeout=120)
    con.answer(r"Hostname \(letters", hostname)
    con.answer(r"Management interface \(console", "eth0")
    con.answer(r"Management address with prefix", mgmt)
    con.answer(r"Data interface \(VIPs", "eth1")
    con.answer(r"Address of eth1 with prefix", data)
    con.answer(r"Default gateway", "")
    con.answer(r"DNS servers", "")
    con.answer(r"NTP servers", "")
    con.answer(r"Admin password: ", PASSWORD)
    con.answer(r"Admin password again: ", PASSWORD)
    con.answer(r"HA role \[", role)
    con.answer(r"Write these settings\?", "yes")
    con.expect(r"Setup complete", 60)


def shell(con, after_boot=True):
    """Logs in on the console and opens the support shell. After a boot, waits for the login
    prompt; otherwise the console already shows it."""
    if after_boot:
        con.expect(r"Press Enter to log in", 180)
    else:
        con.skip()
    con.send("")
    con.answer(r"Admin password: ", PASSWORD)
    con.answer(r"Choice: ", "5")
    con.expect(r"\(support\)# ", 30)


def run_cmd(con, command, timeout=60):
    """Runs a shell command on the console; returns its exit code (and leaves output in con.buf)."""
    marker = "RC%d" % int(time.time() * 1000 % 1000000)
    con.send("%s; echo %s=$?" % (command, marker))
    m = con.expect(r"%s=(\d+)" % marker, timeout)
    return int(m.group(1))


# ---------------------------------------------------------------------------------------
# Update files for the test.

def tandemctl():
    return os.path.join(BUILD, "tandemctl")  # copied there by image/build.sh


def build_update(out, version, initramfs):
    key = os.environ.get("TANDEM_SIGNING_KEY", os.path.join(BUILD, "keys", "signing.pk8"))
    sh(tandemctl(), "firmware", "build", "--version", version, "--kernel", os.path.join(BUILD, "vmlinuz"),
       "--initramfs", initramfs, "--key", key, "--output", out)


def repack_initramfs(out, edit):
    """Unpacks build/initramfs.img, lets `edit(root)` change it, packs it into `out`."""
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "root")
        os.mkdir(root)
        subprocess.run("zstd -dc %s | cpio -id --quiet" % os.path.join(BUILD, "initramfs.img"),
                       shell=True, cwd=root, check=True)
        edit(root)
        subprocess.run("find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet | zstd -q -10 -T0 -o %s -f" % out,
                       shell=True, cwd=root, check=True)


def make_updates(files):
    """Three updates: one whose kernel panics (no init in its initramfs), one whose tandemd
    never becomes healthy, and a good one with a new version."""
    empty = os.path.join(files, "empty.cpio.zst")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run("echo . | cpio -o -H newc --quiet | zstd -q -o %s -f" % empty, shell=True, cwd=tmp, check=True)
    build_update(os.path.join(files, "panic.update"), "0.0.0-test.panic", empty)

    def broken_tandemd(root):
        p = os.path.join(root, "usr/sbin/tandemd")
        with open(p, "w") as f:
            f.write("#!/bin/sh\necho 'tandemd (deliberately broken for the test) exits'\nexit 1\n")
        os.chmod(p, 0o755)
    unhealthy = os.path.join(files, "unhealthy-initramfs.img")
    repack_initramfs(unhealthy, broken_tandemd)
    build_update(os.path.join(files, "unhealthy.update"), "0.0.0-test.unhealthy", unhealthy)

    good_version = open(os.path.join(BUILD, "rootfs/etc/tandem/release")).read().strip() + ".next"

    def new_release(root):
        with open(os.path.join(root, "etc/tandem/release"), "w") as f:
            f.write(good_version + "\n")
    good = os.path.join(files, "good-initramfs.img")
    repack_initramfs(good, new_release)
    build_update(os.path.join(files, "good.update"), good_version, good)
    return good_version


SERVICE = """schema: 1
shared:
  services:
    - name: web
      listen: %(data)s.10:80
      protocol: tcp
      pool: web
  pools:
    - name: web
      health_check: { interval: 1s, timeout: 500ms, rise: 1, fall: 2, tcp: {} }
      servers:
        - { id: srv1, address: %(data)s.200:8080 }
"""


def firmware_status(con):
    con.skip()
    run_cmd(con, "echo JSON-BEGIN; tandemctl firmware status --json | tr -d '\\n'; echo; echo JSON-END")
    found = re.findall(r"JSON-BEGIN\r?\n(.*?)\r?\nJSON-END", con.buf)
    return json.loads(found[-1])


def phase1_test():
    results = {}
    lab = Lab()
    log("accelerator: %s, memory %d MiB, tag %s" % (lab.accel, MEMORY_MB, TAG))
    files = os.path.join(lab.dir, "files")
    os.makedirs(files)
    with open(os.path.join(files, "svc.yaml"), "w") as f:
        f.write(SERVICE % {"data": DATA_NET})
    log("building the test updates (panic, unhealthy, good)")
    good_version = make_updates(files)
    lab.network()
    serve_files(lab, files)
    www = os.path.join(lab.dir, "www")
    os.makedirs(www)
    with open(os.path.join(www, "marker.txt"), "w") as f:
        f.write("served-by-backend-%s\n" % TAG)
    lab.helper(SRV, sys.executable, "-m", "http.server", "8080", "--bind", DATA_NET + ".200", cwd=www)

    disk = lab.disk("a")
    t0 = time.time()
    con = lab.start_vm("a", 1, disk)
    log("VM a started; waiting for the first-boot wizard")
    con.expect(r"Press Enter to start the first-boot setup", 120)
    results["first_boot_to_wizard_s"] = round(time.time() - t0, 1)
    con.pos = 0
    run_wizard(con, "lb-a", MGMT_NET + ".10/24", DATA_NET + ".10/24")
    con.expect(r"tandemd is healthy", 60)
    log("wizard answered; tandemd healthy after %.1fs" % (time.time() - t0))

    # The firewall: the management listener answers on the management side only.
    rc, code, _ = curl(CLI, "https://%s.10:9443/metrics" % MGMT_NET, 5)
    assert rc == 0 and code in ("200", "401", "403"), "management listener unreachable: rc=%s code=%s" % (rc, code)
    rc, _, _ = curl(CLI, "https://%s.10:9443/metrics" % DATA_NET, 2)
    assert rc != 0, "the management listener answered on the data interface"
    log("firewall: management listener on eth0 only")

    shell(con, after_boot=False)
    assert run_cmd(con, "wget -q -O /tmp/svc.yaml http://%s.100:8000/svc.yaml && tandemctl apply /tmp/svc.yaml" % MGMT_NET) == 0
    assert wait_served("served-by-backend", 30), "the service does not serve the client"
    log("service web on %s.10:80 serves the client" % DATA_NET)
    run_cmd(con, "free -m | sed -n 2p")
    m = re.findall(r"Mem:\s+(\d+)\s+(\d+)\s+(\d+)", con.buf)
    if m:
        results["vm_memory_total_mib"], results["vm_memory_used_mib"] = int(m[-1][0]), int(m[-1][1])
    run_cmd(con, "sync")

    # Boot to serving: power off, power on, time until the client is served.
    lab.stop_vm("a")
    t0 = time.time()
    con = lab.start_vm("a", 1, disk)
    assert wait_served("served-by-backend", 120), "not serving after a cold boot"
    results["boot_to_serving_s"] = round(time.time() - t0, 1)
    results["boot_to_serving_cpu_s"] = round(cpu_seconds(lab.vms["a"][0]), 1)
    results["host_load_average"] = load_average()
    log("cold boot to serving: %.1fs (QEMU used %.1fs of CPU; host load %.1f)" % (
        results["boot_to_serving_s"], results["boot_to_serving_cpu_s"], results["host_load_average"]))

    # A kernel that panics: the next boot is the old slot.
    shell(con)
    con.send("wget -q -O /tmp/u http://%s.100:8000/panic.update && tandemctl firmware apply --confirm-after 10s --trial-timeout 60s /tmp/u" % MGMT_NET)
    con.expect(r"written to slot B and verified", 120)
    t0 = time.time()
    con.expect(r"Booting `Tandem \(slot B\)'", 90)
    con.expect(r"Kernel panic", 90)
    con.expect(r"Booting `Tandem \(slot A\)'", 90)
    assert wait_served("served-by-backend", 120), "not serving after the panic fallback"
    results["panic_fallback_to_serving_s"] = round(time.time() - t0, 1)
    log("panicking update: back on slot A and serving after %.1fs" % results["panic_fallback_to_serving_s"])
    shell(con)
    st = firmware_status(con)
    assert st["booted"] == "A" and st["confirmed"] == "A" and not st["trial"], st
    assert run_cmd(con, "grep -q 'hostname: lb-a' /config/appliance.yaml && tandemctl versions | grep -q 'apply'") == 0, "config lost"

    # A tandemd that never becomes healthy: the trial times out, the box returns to A.
    con.send("wget -q -O /tmp/u http://%s.100:8000/unhealthy.update && tandemctl firmware apply --confirm-after 10s --trial-timeout 45s /tmp/u" % MGMT_NET)
    con.expect(r"written to slot B and verified", 120)
    t0 = time.time()
    con.expect(r"Booting `Tandem \(slot B\)'", 90)
    con.expect(r"deliberately broken", 90)
    con.expect(r"did not become healthy in time", 120)
    con.expect(r"Booting `Tandem \(slot A\)'", 90)
    assert wait_served("served-by-backend", 120), "not serving after the unhealthy fallback"
    results["unhealthy_fallback_to_serving_s"] = round(time.time() - t0, 1)
    log("unhealthy update: back on slot A and serving after %.1fs" % results["unhealthy_fallback_to_serving_s"])
    shell(con)
    st = firmware_status(con)
    assert st["booted"] == "A" and st["confirmed"] == "A", st

    # A good update: boots B, confirms itself after 10 s of health, stays on B.
    con.send("wget -q -O /tmp/u http://%s.100:8000/good.update && tandemctl firmware apply --confirm-after 10s /tmp/u" % MGMT_NET)
    con.expect(r"written to slot B and verified", 120)
    t0 = time.time()
    con.expect(r"Booting `Tandem \(slot B\)'", 90)
    assert wait_served("served-by-backend", 120), "not serving on the good update"
    con.expect(r"firmware in slot B confirmed", 120)
    results["good_update_to_confirmed_s"] = round(time.time() - t0, 1)
    log("good update: slot B confirmed after %.1fs" % results["good_update_to_confirmed_s"])
    lab.stop_vm("a")
    con = lab.start_vm("a", 1, disk)
    con.expect(r"Booting `Tandem \(slot B\)'", 90)
    assert wait_served("served-by-backend", 120)
    shell(con)
    st = firmware_status(con)
    assert st["booted"] == "B" and st["confirmed"] == "B" and st["running_version"] == good_version, st
    assert run_cmd(con, "grep -q 'hostname: lb-a' /config/appliance.yaml") == 0
    log("after a power cycle: still slot B (%s), config intact" % good_version)

    results["image_data_mib"] = round(int(subprocess.run(["du", "-B1", os.path.join(BUILD, "tandem.img")],
                                                         stdout=subprocess.PIPE).stdout.split()[0]) / 1048576, 1)
    results["accelerator"] = lab.accel
    results["memory_mib"] = MEMORY_MB
    with open(os.path.join(BUILD, "vm-test-results.json"), "w") as f:
        json.dump(results, f, indent=2)
    lab.cleanup()
    # Keep the console logs of the run; drop its disks.
    os.remove(disk)
    print(json.dumps(results, indent=2))
    print("vm-test: 1 passed, 0 failed")


def pair():
    lab = Lab()

    def drop_disks():
        for f in os.listdir(lab.dir):
            if f.endswith(".img"):
                os.remove(os.path.join(lab.dir, f))
    atexit.register(drop_disks)
    lab.network()
    for i, name in enumerate(("a", "b"), start=1):
        lab.start_vm(name, i, lab.disk(name), connect=False)
    print("""
Two VMs boot (%s, %d MiB each). Serial consoles (Ctrl-] leaves socat):
  socat -,raw,echo=0,escape=0x1d UNIX-CONNECT:%s/a.serial
  socat -,raw,echo=0,escape=0x1d UNIX-CONNECT:%s/b.serial
Console output is also logged to %s/<vm>.console.log.
Networks (in namespace %s): management %s.0/24 (VM eth0), data %s.0/24 (VM eth1).
Client:  ip netns exec %s curl http://<VIP>/     (10.77.0.100 and 10.77.1.100)
Backend: ip netns exec %s ...                   (10.77.1.200)
Ctrl-C stops the VMs and removes the namespaces.""" % (
        lab.accel, MEMORY_MB, lab.dir, lab.dir, lab.dir, LAN, MGMT_NET, DATA_NET, CLI, SRV))
    started = time.time()
    while True:
        if PAIR_SECONDS and time.time() - started > PAIR_SECONDS:
            return
        for name, (proc, con, _) in list(lab.vms.items()):
            if proc.poll() is not None:
                log("VM %s exited" % name)
                lab.vms.pop(name)
        if not lab.vms:
            return
        time.sleep(1)


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("vm-lab: needs root (namespaces, taps)")
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "pair":
        pair()
    elif cmd == "test":
        phase1_test()
    else:
        sys.exit(__doc__)
