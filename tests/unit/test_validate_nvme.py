"""Validation of the nvme: section (harness/backends/nvme/schema.py and rules.py) and of logical
pools on its namespaces: each failing example is reported with its message, dotted field and
line (marked ``#<``, see validation.py)."""

from __future__ import annotations

import pytest
from validation import expect, ok, rule_params

from harness.backends.nvme.schema import NQN_RE, check_nqn

HEAD = """
    lab: t
    networks: [{name: storage}, {name: storage2}]
    nodes:
      - name: t1
        roles: [nvme-target]
        disks: [{name: ns, size: 1G}, {name: files, size: 1G, filesystem: xfs, mount: /nvme}]
      - {name: hv1, roles: [hypervisor, nvme-host]}
"""


def topo(nvme: str, tail: str = "") -> str:
    """HEAD plus an nvme: section (and host pools) written at column 0 of the example."""
    return HEAD + nvme + tail


GOOD = """
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{name: pool, kind: block, disk: ns}]
          allowed_hosts: [{node: hv1}]
          ports: [{network: storage}, {network: storage2}]
"""


def test_good_section_passes_on_vms() -> None:
    assert ok(topo(GOOD), "kvm").provider == "vagrant"


SCHEMA_CASES = [
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: "nqn.2024-12.lab.storlab:kvm\\nrm -rf /" #<
          namespaces: [{kind: block, disk: ns}]
          allowed_hosts: [{node: hv1}]
          ports: [{network: storage}]
    """), "is not an NVMe qualified name", "nvme.subsystems[0].nqn", id="nqn-with-newline"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{kind: block, disk: ns}]
          allowed_hosts:
            - "nqn.2014-08.org.nvmexpress:uuid:x y" #<
          ports: [{network: storage}]
    """), "is not an NVMe qualified name", "nvme.subsystems[0].allowed_hosts[0].nqn", id="host-nqn-with-space"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces:
            - {kind: file, path: /nvme/../etc/shadow, size: 1G} #<
          allowed_hosts: [{node: hv1}]
          ports: [{network: storage}]
    """), "is not a plain absolute path", "nvme.subsystems[0].namespaces[0].path", id="path-traversal"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{kind: block, disk: ns}]
          allowed_hosts: [{node: hv1}]
          ports:
            - {network: storage, port: 22} #<
    """), "greater than or equal to 1024", "nvme.subsystems[0].ports[0].port", id="privileged-port"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{kind: block, disk: ns}]
          allowed_hosts: [{node: hv1}]
          ports: #<
            - {network: storage}
            - {network: storage2}
            - {network: storage, port: 4421}
    """), "at most 2 items", "nvme.subsystems[0].ports", id="three-ports"),
]


@pytest.mark.parametrize(("text", "fragment", "field"), SCHEMA_CASES)
def test_schema_problem(text: str, fragment: str, field: str) -> None:
    expect(text, fragment, field, "kvm")


RULE_CASES = [
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{kind: block, disk: ns}]
          allowed_hosts: [{node: hv1}]
          ports:
            - {network: backend} #<
    """), "network 'backend' does not exist", "nvme.subsystems[0].ports[0].network", "kvm", id="unknown-network"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{kind: block, disk: ns}]
          allowed_hosts: [{node: hv1}]
          ports:
            - {network: storage}
            - {network: storage, port: 4420} #<
    """), "port 4420 on storage is listed twice", "nvme.subsystems[0].ports[1]", "kvm", 2, id="port-clash"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces:
            - {kind: file, path: /etc/shadow, size: 1G} #<
          allowed_hosts: [{node: hv1}]
          ports: [{network: storage}]
    """), "/etc/shadow is not inside a mounted data disk of t1", "nvme.subsystems[0].namespaces[0].path", "kvm",
        id="file-outside-data-disk"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces:
            - {kind: block, disk: files} #<
          allowed_hosts: [{node: hv1}]
          ports: [{network: storage}]
    """), "disk files has a filesystem or a mount", "nvme.subsystems[0].namespaces[0].disk", "kvm",
        id="block-on-mounted-disk"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces:
            - {kind: block, disk: nope} #<
          allowed_hosts: [{node: hv1}]
          ports: [{network: storage}]
    """), "target node t1 has no disk 'nope'", "nvme.subsystems[0].namespaces[0].disk", "kvm", id="block-unknown-disk"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{kind: block, disk: ns}]
          allowed_hosts: [] #<
          ports: [{network: storage}]
    """), "admits no host", "nvme.subsystems[0].allowed_hosts", "kvm", id="no-hosts-admits-none"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{kind: block, disk: ns}]
          allowed_hosts:
            - {node: t1} #<
          ports: [{network: storage}]
    """), "node 't1' does not have role 'nvme-host'", "nvme.subsystems[0].allowed_hosts[0].node", "kvm",
        id="allowed-node-without-role"),
    pytest.param(topo("""
    nvme:
      target: t1
      subsystems:
        - nqn: nqn.2024-12.lab.storlab:kvm
          namespaces: [{kind: block, disk: ns}]
          allowed_hosts: [{node: hv1}]
          allow_any_host: true #<
          ports: [{network: storage}]
    """), "allow_any_host: true admits every host", "nvme.subsystems[0].allow_any_host", "kvm", id="any-host-and-list"),
    pytest.param(topo(GOOD, """
    host:
      pools:
        - name: p
          type: logical
          backend: nvme
          path: /dev/vg_nvme
          disk: poool #<
          host: hv1
    """), "no namespace is named 'poool'", "host.pools[0].disk", "kvm", id="pool-unknown-namespace"),
    pytest.param(topo(GOOD, """
    host:
      pools:
        - name: p
          type: logical
          backend: nvme
          path: /dev/vg_nvme
          host: kvm #<
    """), "needs nvme-tcp in this host's kernel", "host.pools[0].host", "ci", id="pool-on-kvm-host-without-nvme-tcp"),
    pytest.param(topo(GOOD, """
    host:
      pools:
        - name: p
          type: logical
          backend: nvme
          path: /dev/vg_nvme
          host: kvm #<
    """), "no subsystem with a namespace admits the KVM host", "host.pools[0].host", "kvm",
        id="pool-on-kvm-host-not-admitted"),
    pytest.param(topo(GOOD, """
    host:
      pools:
        - name: p
          type: dir
          backend: nvme #<
          path: /var/lib/libvirt/images/p
    """), "a dir pool cannot use backend 'nvme'", "host.pools[0].backend", "kvm", id="pool-type-not-logical"),
    pytest.param(topo(GOOD).replace("lab: t", "lab: t\n    provider: lxc")
                 .replace("roles: [nvme-target]", "roles: [nvme-target] #<"),
                 "nvme-target needs nvmet, which this host's kernel lacks", "nodes[0].roles", "ci", 3,
                 id="nvme-on-lxc-refused"),
]


def auth(dhchap: str, second: str = "") -> str:
    """GOOD with hv1's dhchap (and a second subsystem listing hv1 with ``second``), marked where needed."""
    host = "allowed_hosts:\n            - node: hv1\n              dhchap: "
    return topo(GOOD.replace("allowed_hosts: [{node: hv1}]", host + dhchap)
                + (f"""        - nqn: nqn.2024-12.lab.storlab:scratch
          namespaces: [{{name: scratch, kind: file, path: /nvme/s.img, size: 64M}}]
          {host}{second}
          ports: [{{network: storage}}]
""" if second else ""))


KEY = "DHHC-1:00:" + "A" * 43 + "=="  # the shape, not a key: see test_nvme_auth for real ones
GOOD_KEY = "DHHC-1:00:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh+KfiaR:"  # bytes 0..31 and their CRC-32
GOOD_KEY2 = "DHHC-1:00:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAl7OaH:"

AUTH_CASES = [
    pytest.param(auth(f'{{generate: true, key: "{GOOD_KEY}"}} #<'), "give the host's key one way",
                 "nvme.subsystems[0].allowed_hosts[0].dhchap", id="key-and-generate"),
    pytest.param(auth("{hash: sha384} #<"), "give the host's key one way", "nvme.subsystems[0].allowed_hosts[0].dhchap",
                 id="no-key"),
    pytest.param(auth(f'{{key: "{KEY}:"}} #<'), "is not a DH-HMAC-CHAP secret",
                 "nvme.subsystems[0].allowed_hosts[0].dhchap.key", id="key-without-closing-colon-shape"),
    pytest.param(auth(f'{{key: "{GOOD_KEY.replace("KfiaR", "KfiaS")}"}} #<'), "CRC-32",
                 "nvme.subsystems[0].allowed_hosts[0].dhchap.key", id="key-mistyped"),
    pytest.param(auth(f'{{key: "{GOOD_KEY}\\nreboot"}} #<'), "is not a DH-HMAC-CHAP secret",
                 "nvme.subsystems[0].allowed_hosts[0].dhchap.key", id="key-with-line-break"),
    pytest.param(auth(f'{{generate: true, ctrl_key: "{GOOD_KEY}"}} #<'), "generate: true decides the controller's key",
                 "nvme.subsystems[0].allowed_hosts[0].dhchap.ctrl_key", id="generate-and-ctrl-key"),
    pytest.param(auth(f'{{key: "{GOOD_KEY}", bidirectional: true}} #<'), "needs the controller's key",
                 "nvme.subsystems[0].allowed_hosts[0].dhchap.bidirectional", id="bidirectional-literal-no-ctrl-key"),
    pytest.param(auth(f'{{key: "{GOOD_KEY}", ctrl_key: "{GOOD_KEY}"}} #<'), "the controller's key is the host's key",
                 "nvme.subsystems[0].allowed_hosts[0].dhchap.ctrl_key", id="same-key-both-ways"),
    pytest.param(auth("{generate: true, hash: md5} #<"), "Input should be 'sha256'",
                 "nvme.subsystems[0].allowed_hosts[0].dhchap.hash", id="unknown-hash"),
    pytest.param(auth("{generate: true}", "{generate: true, bidirectional: true} #<"), "has another dhchap under "
                 "nvme.subsystems[0].allowed_hosts[0]", "nvme.subsystems[1].allowed_hosts[0].dhchap", id="two-dhchaps-one-host"),
]


def kernels612(text: str) -> str:
    """Both nodes boot the image's 6.12 (Debian 12's 6.1 has no NVMe authentication)."""
    return (text.replace("roles: [nvme-target]\n", 'roles: [nvme-target]\n        kernel: "6.12"\n')
            .replace("{name: hv1, roles: [hypervisor, nvme-host]}",
                     '{name: hv1, roles: [hypervisor, nvme-host], kernel: "6.12"}'))


@pytest.mark.parametrize(("text", "fragment", "field"), AUTH_CASES)
def test_dhchap_problem(text: str, fragment: str, field: str) -> None:
    p = expect(kernels612(text), fragment, field, "kvm")
    assert "AAECAwQFBgcICQ" not in p.message + p.fix  # a key is never shown back


def test_dhchap_passes_generated_or_literal() -> None:
    ok(kernels612(auth("{generate: true, bidirectional: true, hash: sha512, dhgroup: ffdhe4096}",
                       "{generate: true, bidirectional: true, hash: sha512, dhgroup: ffdhe4096}")), "kvm")
    ok(kernels612(auth(f'{{key: "{GOOD_KEY}", ctrl_key: "{GOOD_KEY2}"}}')), "kvm")


TARGET_612 = ("roles: [nvme-target]\n", 'roles: [nvme-target]\n        kernel: "6.12"\n')
KERNEL_CASES = [
    pytest.param(auth("{generate: true}").replace("- name: t1", "- name: t1 #<"), "node t1 takes part in DH-HMAC-CHAP",
                 "nodes[0].kernel", 2, id="target-and-host-on-6.1"),
    pytest.param(auth("{generate: true}").replace(*TARGET_612).replace("nvme-host]}", "nvme-host]} #<"),
                 "node hv1 takes part in DH-HMAC-CHAP", "nodes[1].kernel", 1, id="host-on-6.1"),
    pytest.param(kernels612(auth("{generate: true}")).replace('kernel: "6.12"\n', 'kernel: "6.1" #<\n'),
                 "node t1 takes part in DH-HMAC-CHAP", "nodes[0].kernel", 1, id="target-on-6.1-said"),
]


@pytest.mark.parametrize(("text", "fragment", "field", "count"), KERNEL_CASES)
def test_dhchap_needs_a_kernel_with_nvme_authentication(text: str, fragment: str, field: str, count: int) -> None:
    p = expect(text, fragment, field, "kvm", count, fix='kernel: "6.12"')
    assert "kernel 6.1," in p.message and "CONFIG_NVME_TARGET_AUTH" in p.message


def test_no_dhchap_needs_no_kernel_of_its_own() -> None:
    assert ok(topo(GOOD), "kvm").provider == "vagrant"


@pytest.mark.parametrize(("text", "fragment", "field", "profile", "count"), rule_params(RULE_CASES))
def test_rule_problem(text: str, fragment: str, field: str, profile: str, count: int) -> None:
    p = expect(text, fragment, field, profile, count)
    if "lxc" in text:
        assert "provider: vagrant" in p.fix


def test_pool_source_on_a_namespace_passes() -> None:
    ok(topo(GOOD, """
    host:
      pools:
        - {name: p, type: logical, backend: nvme, path: /dev/vg_nvme, disk: pool, host: hv1}
    """), "kvm")


@pytest.mark.parametrize("nqn", [
    "nqn.2024-12.lab.storlab:kvm", "nqn.2014-08.org.nvmexpress:uuid:0ff0d74b-e1cf-50c5-b26a-7828ae54fd6b",
    "nqn.2024-12.io.x:" + "a" * (223 - len("nqn.2024-12.io.x:"))])
def test_nqn_accepted(nqn: str) -> None:
    assert check_nqn(nqn) == nqn


@pytest.mark.parametrize("nqn", [
    "nqn.2024-12.lab.storlab:kvm\n", "nqn.2024-13.lab.storlab:kvm", "nqn.2024-12.Lab.storlab:kvm",
    "nqn.2024-12.lab.storlab", "nqn.2024-12.lab.storlab:k v", "nqn.2024-12.lab.storlab:k'v", "nqn.2024-12.lab.storlab:$(id)",
    "nqn.2024-12.lab.storlab:a..b", "nqn.2024-12.io.x:" + "a" * (224 - len("nqn.2024-12.io.x:")), "iqn.2024-12.lab.x:y"])
def test_nqn_refused(nqn: str) -> None:
    assert not NQN_RE.fullmatch(nqn) or len(nqn) > 223 or ".." in nqn
    with pytest.raises(ValueError, match=r"fix: write nqn\.YYYY-MM"):
        check_nqn(nqn)
