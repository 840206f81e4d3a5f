#!/usr/bin/env python3
"""The Tandem VM lab: boots build/tandem.img under QEMU on bridges inside a network namespace.

  scripts/vm-lab.py pair    two VMs (A, B) and a client, until Ctrl-C   (make vm-pair)
  scripts/vm-lab.py test    the acceptance test: phase 1, then the pair  (make vm-test)
  scripts/vm-lab.py test phase1 | pair    one of the two

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
import codecs
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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
                self.sock = s
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.1)
        # A reader that never stops: QEMU's serial port waits for a socket client that does
        # not read, and so would the guest's console writes (the supervisor, and through its
        # pipe, tandemd's logging), stalling the box under test.
        threading.Thread(target=self._reader, args=(s,), daemon=True).start()

    def _reader(self, s):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            self.buf += decoder.decode(data)

    def pump(self, wait):
        time.sleep(wait)

    def drain(self):
        """Lets the reader catch up with what the VM printed."""
        time.sleep(0.3)

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
    def __init__(self, sub=None):
        self.dir = os.path.join(BUILD, "vm", TAG, *([sub] if sub else []))
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

def run_wizard(con, hostname, mgmt, data, role="standalone", peer=None, peer_fingerprint=""):
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
    if role != "standalone":
        con.answer(r"Peer box's address on the data network", peer)
        con.answer(r"Peer's sync certificate fingerprint", peer_fingerprint)
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


def make_panic_update(files):
    """An update whose kernel panics: its initramfs has no init."""
    empty = os.path.join(files, "empty.cpio.zst")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run("echo . | cpio -o -H newc --quiet | zstd -q -o %s -f" % empty, shell=True, cwd=tmp, check=True)
    build_update(os.path.join(files, "panic.update"), "0.0.0-test.panic", empty)


def make_updates(files):
    """Three updates: one whose kernel panics (no init in its initramfs), one whose tandemd
    never becomes healthy, and a good one with a new version."""
    make_panic_update(files)

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


def phase1_test(results):
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
    lab.cleanup()
    # Keep the console logs of the run; drop its disks.
    os.remove(disk)


# ---------------------------------------------------------------------------------------
# Phase 2: the pair.

VIP = DATA_NET + ".10"
PAIR_ADDR = {"a": DATA_NET + ".11", "b": DATA_NET + ".12"}
# The VRRP advert interval of the pair's router. 100 ms (the default) holds here under TCG;
# see docs/image.md ("The pair under QEMU") for why and for what to use when it does not.
ADVERT = os.environ.get("TANDEM_VM_ADVERT", "100ms")
PROBE_PERIOD = 0.02  # the client asks the VIP every 20 ms
OUTAGE_BOUND_S = 1.0

PAIR_SERVICE = """schema: 1
shared:
  services:
    - name: web
      listen: %(vip)s:80
      protocol: tcp
      pool: web
  pools:
    - name: web
      health_check: { interval: 1s, timeout: 500ms, rise: 1, fall: 2, tcp: {} }
      servers:
        - { id: srv1, address: %(data)s.200:8080 }
  vrrp:
    routers:
      - name: front
        vrid: 77
        vips: [%(vip)s/24]
        advert_interval: %(advert)s
        preempt: true
"""

# The backend: answers every GET with the marker and the address the request came from, which
# is the data address of the box that proxied it (10.77.1.11: A, .12: B).
BACKEND = r'''
import http.server, sys
tag, addr = sys.argv[1], sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        body = ("served-by-backend-%s via %s\n" % (tag, self.client_address[0])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((addr, 8080), H).serve_forever()
'''

# The client loop: a new connection to the VIP every PERIOD seconds whether or not the last
# one answered (so a lost SYN does not stall the loop), each with a 1 s limit. One line per
# probe: start, end, ok|fail, the proxying box's address (or the error).
PROBER = r'''
import asyncio, sys, time
out = open(sys.argv[1], "w", buffering=1)
vip, port, period = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
async def probe():
    t0 = time.time()
    ok, via = False, "-"
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(vip, port), 1.0)
        try:
            w.write(b"GET /whoami HTTP/1.0\r\n\r\n")
            data = await asyncio.wait_for(r.read(), 1.0)
        finally:
            w.close()
        body = data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")
        if "served-by-backend" in body:
            ok, via = True, body.rsplit(" via ", 1)[-1].strip()
        else:
            via = "bad-answer"
    except Exception as e:
        via = type(e).__name__
    out.write("%.4f %.4f %s %s\n" % (t0, time.time(), "ok" if ok else "fail", via))
async def main():
    tasks = set()
    due = time.monotonic()
    while True:
        t = asyncio.ensure_future(probe())
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        due += period
        await asyncio.sleep(max(0.0, due - time.monotonic()))
asyncio.run(main())
'''


class Probes:
    """The client loop's record, read back from its file."""

    def __init__(self, path):
        self.path = path

    def read(self):
        rows = []
        try:
            with open(self.path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 4:
                        rows.append((float(parts[0]), float(parts[1]), parts[2] == "ok", parts[3]))
        except OSError:
            pass
        return rows

    def first_ok(self, after, via=None):
        """The first probe started after `after` that was answered (through `via`, if given)."""
        for t0, t1, ok, v in sorted(self.read()):
            if t0 >= after and ok and (via is None or v == via):
                return t0, t1, v
        return None

    def wait_ok(self, after, via=None, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            hit = self.first_ok(after, via)
            if hit:
                return hit
            time.sleep(0.2)
        return None

    def window(self, start, end):
        """What the client saw between `start` and `end`: the longest time without an answer
        (between two answered probes, by completion), failed probes, and who answered."""
        rows = [r for r in self.read() if start <= r[0] <= end]
        oks = sorted(t1 for t0, t1, ok, _ in rows if ok)
        # The answer just before the window counts as its start (the outage starts there).
        before = [t1 for t0, t1, ok, _ in self.read() if ok and t1 < start]
        if before:
            oks.insert(0, max(before))
        gaps = [(b - a, a, b) for a, b in zip(oks, oks[1:])]
        worst = max(gaps) if gaps else (float("nan"), start, end)
        vias = {}
        for _, _, ok, v in rows:
            if ok:
                vias[v] = vias.get(v, 0) + 1
        return {
            "longest_without_answer_s": round(worst[0], 3),
            "probes": len(rows),
            "failed": sum(1 for r in rows if not r[2]),
            "answered_by": vias,
            "_gap_at": worst[1],
        }


def fingerprint_on(con):
    """The sync fingerprint the console showed before the wizard (two lines of 16 pairs)."""
    m = re.search(r"fingerprint \(SHA-256\)[^\n]*\n\s*([0-9A-F:]{47})\s*\r?\n\s*([0-9A-F:]{47})", con.buf)
    return (m.group(1) + ":" + m.group(2)) if m else ""


def role_of(con):
    """`active`, `passive` or `standalone`, from `tandemctl status --json` in the support shell."""
    con.skip()
    run_cmd(con, "tandemctl status --json | grep -m1 '\"role\"'")
    found = re.findall(r'"role":\s*"(\w+)"', con.buf[con.pos - 4000:])
    return found[-1] if found else None


def role_changes(con):
    """The pair-role changes tandemd logged on this console so far, as (previous, new)."""
    con.drain()
    text = re.sub(r"\x1b\[[0-9;]*m", "", con.buf)
    return re.findall(r"pair role changed.*?previous\S*?=(\w+).*?role\S*?=(\w+)", text)


def wait_role(con, role, timeout=60):
    end = time.time() + timeout
    got = None
    while time.time() < end:
        got = role_of(con)
        if got == role:
            return True
        time.sleep(1)
    raise AssertionError("role is %r, not %r, after %ss" % (got, role, timeout))


def pair_test():
    """Two boxes from the image: both wizards answered (A primary, B secondary), the same
    shared config with a VIP applied on both, the VIP serves the client through A; A's power
    is cut and B serves within 1 s; A boots again and preempts (the router has `preempt:
    true`, A the higher priority); B takes a firmware update whose kernel panics and comes back
    on its old slot, config intact, passive, while A serves; A's power is cut again and B,
    after its fallback, serves within 1 s."""
    r = {"advert_interval": ADVERT, "probe_period_s": PROBE_PERIOD}
    lab = Lab("pair")
    log("pair: accelerator %s, memory %d MiB, advert interval %s, tag %s" % (lab.accel, MEMORY_MB, ADVERT, TAG))
    files = os.path.join(lab.dir, "files")
    os.makedirs(files)
    with open(os.path.join(files, "pair.yaml"), "w") as f:
        f.write(PAIR_SERVICE % {"data": DATA_NET, "vip": VIP, "advert": ADVERT})
    make_panic_update(files)
    for name, text in (("backend.py", BACKEND), ("prober.py", PROBER)):
        with open(os.path.join(lab.dir, name), "w") as f:
            f.write(text)
    lab.network()
    serve_files(lab, files)
    lab.helper(SRV, sys.executable, os.path.join(lab.dir, "backend.py"), TAG, DATA_NET + ".200")

    # Both boxes boot at once; each shows its fingerprint and waits for the wizard.
    disks = {n: lab.disk(n) for n in ("a", "b")}

    def drop_disks():
        for d in disks.values():
            if os.path.exists(d):
                os.remove(d)
    atexit.register(drop_disks)
    cons = {}
    t0 = time.time()
    for i, n in enumerate(("a", "b"), start=1):
        cons[n] = lab.start_vm(n, i, disks[n])
    for n in ("a", "b"):
        cons[n].expect(r"Press Enter to start the first-boot setup", 180)
        r["first_boot_to_wizard_s_" + n] = round(time.time() - t0, 1)
    fps = {n: fingerprint_on(cons[n]) for n in ("a", "b")}
    log("both wizards up (A %.1fs, B %.1fs); fingerprints A %s..., B %s..." % (
        r["first_boot_to_wizard_s_a"], r["first_boot_to_wizard_s_b"], fps["a"][:11], fps["b"][:11]))
    for n, role, other in (("a", "primary", "b"), ("b", "secondary", "a")):
        cons[n].pos = 0
        run_wizard(cons[n], "lb-" + n, "%s.%d/24" % (MGMT_NET, 10 + ord(n) - 96), PAIR_ADDR[n] + "/24",
                   role=role, peer=PAIR_ADDR[other], peer_fingerprint=fps[other])
    for n in ("a", "b"):
        cons[n].expect(r"tandemd is healthy", 90)
        shell(cons[n], after_boot=False)
        other = "b" if n == "a" else "a"
        fp = fps[other].replace(":", "").lower()
        assert run_cmd(cons[n], "grep -q 'role: %s' /config/appliance.yaml && grep -q 'peer: .*%s' /config/appliance.yaml"
                       " && grep -q 'peer_fingerprint: %s' /config/appliance.yaml"
                       % ("primary" if n == "a" else "secondary", PAIR_ADDR[other], fp)) == 0, "settings of %s" % n
    log("wizards answered: A primary, B secondary, each naming the other as peer")

    # The same shared config on both: each box's supervisor places the new router on eth1
    # (priority 200 on A, 100 on B) and restarts tandemd.
    for n in ("a", "b"):
        con = cons[n]
        assert run_cmd(con, "wget -q -O /tmp/pair.yaml http://%s.100:8000/pair.yaml && tandemctl apply /tmp/pair.yaml" % MGMT_NET) == 0, "apply refused on " + n
        con.expect(r"node part rewritten, restarting tandemd", 30)
        con.expect(r"tandemd is healthy", 90)
        con.skip()
        assert run_cmd(con, "grep -A4 'router: front' /config/tandem.yaml | grep -q 'priority: %d'" % (200 if n == "a" else 100)) == 0, \
            "node part of %s does not place the router" % n
    wait_role(cons["a"], "active")
    wait_role(cons["b"], "passive")
    log("shared config applied on both: A active, B passive")

    probes = Probes(os.path.join(lab.dir, "probes.log"))
    lab.helper(CLI, sys.executable, os.path.join(lab.dir, "prober.py"), probes.path, VIP, "80", str(PROBE_PERIOD))
    hit = probes.wait_ok(time.time() - 1, timeout=30)
    assert hit and hit[2] == PAIR_ADDR["a"], "the VIP is not served through A: %r" % (hit,)
    time.sleep(5)
    steady = probes.window(time.time() - 5, time.time())
    assert steady["failed"] == 0 and list(steady["answered_by"]) == [PAIR_ADDR["a"]], steady
    log("the VIP %s serves the client through A (%d probes in 5 s, none failed)" % (VIP, steady["probes"]))

    # Failover: A's power is cut.
    changes_b = len(role_changes(cons["b"]))
    t_cut = time.time()
    lab.stop_vm("a")
    log("VM A stopped (QEMU quit) %.2fs after the cut was asked" % (time.time() - t_cut))
    hit = probes.wait_ok(t_cut, via=PAIR_ADDR["b"], timeout=30)
    assert hit, "B never served the VIP"
    time.sleep(2)
    w = probes.window(t_cut, time.time())
    r["failover"] = dict(w, first_answer_by_b_after_cut_s=round(hit[1] - t_cut, 3))
    r["failover"].pop("_gap_at")
    log("failover: B answers %.3fs after A's power cut; longest time without an answer %.3fs (%d probes failed)" % (
        hit[1] - t_cut, w["longest_without_answer_s"], w["failed"]))
    assert w["longest_without_answer_s"] < OUTAGE_BOUND_S, "outage %.3fs >= %ss" % (w["longest_without_answer_s"], OUTAGE_BOUND_S)
    new = role_changes(cons["b"])[changes_b:]
    assert new and new[-1][1] == "active", "B logged no change to active: %r" % new

    # A boots again: with `preempt: true` and the higher priority it takes the role back.
    t_boot = time.time()
    cons["a"] = lab.start_vm("a", 1, disks["a"])
    hit = probes.wait_ok(t_boot, via=PAIR_ADDR["a"], timeout=180)
    assert hit, "A did not take the VIP back after its boot"
    r["a_boot_to_serving_s"] = round(hit[1] - t_boot, 1)
    r["a_boot_to_serving_cpu_s"] = round(cpu_seconds(lab.vms["a"][0]), 1)
    time.sleep(3)
    w = probes.window(t_boot, time.time())
    w.pop("_gap_at")
    r["preemption"] = w
    log("A booted and preempted: serving through A %.1fs after power-on (%.1fs CPU); longest time without an answer %.3fs" % (
        r["a_boot_to_serving_s"], r["a_boot_to_serving_cpu_s"], w["longest_without_answer_s"]))
    assert w["longest_without_answer_s"] < OUTAGE_BOUND_S, w
    shell(cons["a"])
    assert role_of(cons["a"]) == "active", "A is not active after its boot"
    assert role_of(cons["b"]) == "passive", "B did not step down"
    cons["a"].skip()
    run_cmd(cons["a"], "echo CT $(cat /proc/sys/net/netfilter/nf_conntrack_max /proc/sys/net/netfilter/nf_conntrack_count)")
    ct = re.findall(r"CT (\d+) (\d+)", cons["a"].buf[cons["a"].pos - 2000:])
    if ct:
        r["a_conntrack_max"], r["a_conntrack_count_after_boot"] = int(ct[-1][0]), int(ct[-1][1])
        assert r["a_conntrack_max"] >= 65536, "nf_conntrack_max is %d: sysctl.conf was not applied" % r["a_conntrack_max"]
    tail = probes.window(time.time() - 2, time.time())
    assert list(tail["answered_by"]) == [PAIR_ADDR["a"]], tail
    log("A preempted as configured (preempt: true, priority 200 > 100): A active, B passive")

    # A broken update on B: its kernel panics, B comes back on slot A with its config, passive.
    changes_a = len(role_changes(cons["a"]))
    con = cons["b"]
    con.skip()
    t_upd = time.time()
    con.send("wget -q -O /tmp/u http://%s.100:8000/panic.update && tandemctl firmware apply --confirm-after 10s --trial-timeout 60s /tmp/u" % MGMT_NET)
    con.expect(r"written to slot B and verified", 120)
    con.expect(r"Booting `Tandem \(slot B\)'", 90)
    con.expect(r"Kernel panic", 90)
    con.expect(r"Booting `Tandem \(slot A\)'", 90)
    t_b_boot, booted_at = time.time(), con.pos
    con.expect(r"tandemd is healthy", 180)
    r["b_boot_to_ready_s"] = round(time.time() - t_b_boot, 1)
    con.pos = booted_at  # the login prompt came before tandemd's health
    shell(con)
    st = firmware_status(con)
    assert st["booted"] == "A" and st["confirmed"] == "A" and not st["trial"], st
    assert run_cmd(con, "grep -q 'hostname: lb-b' /config/appliance.yaml && grep -q 'role: secondary' /config/appliance.yaml"
                   " && tandemctl versions | grep -q 'apply' && grep -A4 'router: front' /config/tandem.yaml | grep -q 'priority: 100'") == 0, \
        "B's config is not intact after the fallback"
    assert role_of(con) == "passive", "B is not passive after its fallback"
    w = probes.window(t_upd, time.time())
    w.pop("_gap_at")
    r["during_b_update"] = w
    r["b_panic_fallback_s"] = round(time.time() - t_upd, 1)
    assert list(w["answered_by"]) == [PAIR_ADDR["a"]] and w["longest_without_answer_s"] < OUTAGE_BOUND_S, w
    assert role_changes(cons["a"])[changes_a:] == [], role_changes(cons["a"])[changes_a:]
    log("B: the panicking update fell back to slot A, config intact, passive; ready %.1fs after its boot;"
        " A served throughout (longest time without an answer %.3fs)" % (r["b_boot_to_ready_s"], w["longest_without_answer_s"]))

    # A second failover, onto B after its fallback.
    t_cut = time.time()
    lab.stop_vm("a")
    hit = probes.wait_ok(t_cut, via=PAIR_ADDR["b"], timeout=30)
    assert hit, "B never served the VIP after its fallback"
    time.sleep(2)
    w = probes.window(t_cut, time.time())
    w.pop("_gap_at")
    r["failover_2"] = dict(w, first_answer_by_b_after_cut_s=round(hit[1] - t_cut, 3))
    log("second failover: B answers %.3fs after the cut; longest time without an answer %.3fs" % (
        hit[1] - t_cut, w["longest_without_answer_s"]))
    assert w["longest_without_answer_s"] < OUTAGE_BOUND_S, w

    r["role_changes_a"] = ["%s>%s" % c for c in role_changes(cons["a"])]
    r["role_changes_b"] = ["%s>%s" % c for c in role_changes(cons["b"])]
    r["host_load_average"] = load_average()
    lab.cleanup()
    drop_disks()
    return r


def print_figures(results):
    """The figures for docs/performance.md and docs/image.md."""
    print("\nFigures (host load %.1f at the end):" % load_average())
    if "boot_to_serving_s" in results:
        print("  phase 1: cold boot to serving %.1f s (%.1f s CPU); first boot to wizard %.1f s" % (
            results["boot_to_serving_s"], results["boot_to_serving_cpu_s"], results["first_boot_to_wizard_s"]))
    p = results.get("pair")
    if p:
        print("  pair (advert interval %s, client probe every %d ms):" % (p["advert_interval"], p["probe_period_s"] * 1000))
        print("    first boot to wizard: A %.1f s, B %.1f s" % (p["first_boot_to_wizard_s_a"], p["first_boot_to_wizard_s_b"]))
        print("    A: power-on to serving the VIP (preempting B): %.1f s (%.1f s CPU)" % (
            p["a_boot_to_serving_s"], p["a_boot_to_serving_cpu_s"]))
        print("    B: boot (after its panicking update) to ready as passive: %.1f s" % p["b_boot_to_ready_s"])
        for k, label in (("failover", "failover, A's power cut"), ("failover_2", "failover again, onto B after its fallback")):
            f = p[k]
            print("    %s: B answers after %.3f s; longest time without an answer %.3f s; %d of %d probes failed" % (
                label, f["first_answer_by_b_after_cut_s"], f["longest_without_answer_s"], f["failed"], f["probes"]))
        for k, label in (("preemption", "A preempting"), ("during_b_update", "B's update and fallback")):
            f = p[k]
            print("    %s: longest time without an answer %.3f s; %d of %d probes failed" % (
                label, f["longest_without_answer_s"], f["failed"], f["probes"]))


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
        which = sys.argv[2:] or ["phase1", "pair"]
        if any(w not in ("phase1", "pair") for w in which):
            sys.exit(__doc__)
        started = time.time()
        results = {}
        if "phase1" in which:
            phase1_test(results)
        if "pair" in which:
            results["pair"] = pair_test()
        results["vm_test_wall_s"] = round(time.time() - started, 1)
        with open(os.path.join(BUILD, "vm-test-results.json"), "w") as f:
            json.dump(results, f, indent=2)
        print(json.dumps(results, indent=2))
        print_figures(results)
        print("vm-test: %d passed, 0 failed (%s) in %.1f min" % (len(which), ", ".join(which), results["vm_test_wall_s"] / 60))
    else:
        sys.exit(__doc__)
