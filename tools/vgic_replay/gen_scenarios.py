#!/usr/bin/env python3
"""Writes the vgic-replay scenario scripts in testdata/ (*.script).

The scripts are checked in; this generator only saves typing when they need
to change. Expected outputs (*.expected) are written by hand from what the
corresponding kvm-unit-tests ITS test asserts (see the comments in each
script) and are NOT generated.

Usage: tools/vgic_replay/gen_scenarios.py tools/vgic_replay/testdata
"""
import os
import sys

LPI_PROP_DEFAULT = 0xA1  # priority 0xa0, enabled (kvm-unit-tests' default)
LPI_PROP_DISABLED = 0xA0


class Script:
    def __init__(self, title, vcpus=4, ram=None, halves=False):
        self.lines = ["# " + l for l in title.strip().splitlines()]
        self.lines.append("vcpus %d" % vcpus)
        self.base = 0
        if ram:
            self.lines.append("ram 0x%x 0x%x" % ram)
            self.base = ram[0]
        self.vcpus = vcpus
        self.halves = halves  # 32-bit accesses to 64-bit registers
        self.prop = self.base + 0x100000
        self.pend = self.base + 0x200000
        self.dev_table = self.base + 0x300000
        self.coll_table = self.base + 0x310000
        self.l2 = self.base + 0x330000
        self.cmdq = self.base + 0x320000
        self.itt = self.base + 0x400000
        self.cwriter = 0

    def c(self, text):
        self.lines.append("# " + text)

    def raw(self, text):
        self.lines.append(text)

    def wr64(self, frame, off, val):
        if self.halves:
            self.lines.append("wr32 %s 0x%x 0x%x" % (frame, off, val & 0xFFFFFFFF))
            self.lines.append("wr32 %s 0x%x 0x%x" % (frame, off + 4, val >> 32))
        else:
            self.lines.append("wr64 %s 0x%x 0x%x" % (frame, off, val))

    def gic_setup(self, enable_lpis=True, cpus=None):
        self.c("Distributor: ARE + EnableGrp1")
        self.raw("wr32 gicd 0x0 0x12")
        self.c("LPI configuration table (PROPBASER, 16 ID bits) and pending tables")
        for v in range(self.vcpus):
            self.raw("wr32 gicr%d 0x14 0x0" % v)  # WAKER: wake up
            self.wr64("gicr%d" % v, 0x70, self.prop | 15)
            self.wr64("gicr%d" % v, 0x78, self.pend + v * 0x10000)
        if enable_lpis:
            self.enable_lpis(cpus or range(self.vcpus))

    def enable_lpis(self, cpus):
        for v in cpus:
            self.raw("wr32 gicr%d 0x0 0x1" % v)

    def lpi_config(self, intid, prop):
        self.raw("mem8 0x%x 0x%x" % (self.prop + intid - 8192, prop))

    def its_setup(self, indirect=False):
        self.c("ITS: device table (BASER0), collection table (BASER1), "
               "4 KiB command queue")
        if indirect:
            self.c("two-level device table: level-1 entry 0 -> level-2 page")
            self.raw("mem64 0x%x 0x%x" % (self.dev_table, (1 << 63) | self.l2))
            self.wr64("gits", 0x100, (1 << 63) | (1 << 62) | self.dev_table)
        else:
            self.wr64("gits", 0x100, (1 << 63) | self.dev_table)
        self.wr64("gits", 0x108, (1 << 63) | self.coll_table)
        self.wr64("gits", 0x80, (1 << 63) | self.cmdq)
        self.raw("wr32 gits 0x0 0x1")

    def cmd(self, comment, dw):
        self.c(comment)
        for i, w in enumerate(dw):
            if w:
                self.raw("mem64 0x%x 0x%x" % (self.cmdq + self.cwriter + 8 * i, w))
            else:
                self.raw("mem64 0x%x 0x0" % (self.cmdq + self.cwriter + 8 * i))
        self.cwriter = (self.cwriter + 32) % 4096
        if self.halves:
            self.raw("wr32 gits 0x88 0x%x" % self.cwriter)
        else:
            self.raw("wr64 gits 0x88 0x%x" % self.cwriter)

    def itt_addr(self, dev):
        return self.itt + dev * 0x1000

    def mapd(self, dev, bits, valid=True):
        self.cmd("MAPD dev %d, %d EventID bits, V=%d" % (dev, bits, valid),
                 [0x08 | dev << 32, bits - 1,
                  (self.itt_addr(dev) if valid else 0) | (int(valid) << 63), 0])

    def mapc(self, icid, rd, valid=True):
        self.cmd("MAPC col %d -> cpu %d, V=%d" % (icid, rd, valid),
                 [0x09, 0, icid | rd << 16 | int(valid) << 63, 0])

    def mapti(self, dev, ev, lpi, icid):
        self.cmd("MAPTI dev %d event %d -> LPI %d col %d" % (dev, ev, lpi, icid),
                 [0x0A | dev << 32, ev | lpi << 32, icid, 0])

    def int_(self, dev, ev):
        self.cmd("INT dev %d event %d" % (dev, ev), [0x03 | dev << 32, ev, 0, 0])

    def inv(self, dev, ev):
        self.cmd("INV dev %d event %d" % (dev, ev), [0x0C | dev << 32, ev, 0, 0])

    def invall(self, icid):
        self.cmd("INVALL col %d" % icid, [0x0D, 0, icid, 0])

    def sync(self, rd):
        self.cmd("SYNC cpu %d" % rd, [0x05, 0, rd << 16, 0])

    def movi(self, dev, ev, icid):
        self.cmd("MOVI dev %d event %d -> col %d" % (dev, ev, icid),
                 [0x01 | dev << 32, ev, icid, 0])

    def text(self):
        return "\n".join(self.lines) + "\n"


def trigger_setup(s):
    s.gic_setup()
    s.its_setup()
    s.c("its_create_device(2, 8 events) / (7, 8 events); collections 3->3, 2->2")
    s.mapd(2, 8)
    s.mapd(7, 8)
    s.mapc(3, 3)
    s.mapc(2, 2)
    s.lpi_config(8195, LPI_PROP_DEFAULT)
    s.lpi_config(8196, LPI_PROP_DEFAULT)
    s.invall(2)
    s.invall(3)
    s.mapti(2, 20, 8195, 3)
    s.mapti(7, 255, 8196, 2)


def introspection():
    s = Script("""its-introspection (kvm-unit-tests arm/gic.c test_its_introspection):
GITS_TYPER, IIDR, PIDR2 and the BASER tables as a driver probes them.""")
    s.raw("rd64 gits 0x8")
    s.raw("rd32 gits 0x8")
    s.raw("rd32 gits 0xc")
    s.raw("rd32 gits 0x4")
    s.raw("rd32 gits 0xffe8")
    s.raw("rd32 gits 0x0")
    for n in range(8):
        s.raw("rd64 gits 0x%x" % (0x100 + 8 * n))
    s.c("the driver writes all-ones to learn which fields stick")
    s.raw("wr64 gits 0x100 0xffffffffffffffff")
    s.raw("rd64 gits 0x100")
    s.raw("wr64 gits 0x108 0xffffffffffffffff")
    s.raw("rd64 gits 0x108")
    s.raw("wr64 gits 0x110 0xffffffffffffffff")
    s.raw("rd64 gits 0x110")
    s.raw("wr64 gits 0x80 0xffffffffffffffff")
    s.raw("rd64 gits 0x80")
    s.raw("rd64 gits 0x90")
    s.raw("its_error")
    return s


def trigger():
    s = Script("""its-trigger (kvm-unit-tests arm/gic.c test_its_trigger):
INT triggers the mapped LPI on the collection's target; a disabled LPI does
not fire until re-enabled; an unmapped device triggers nothing.""")
    trigger_setup(s)
    s.c("int dev=2, eventid=20 -> lpi=8195, col=3")
    s.int_(2, 20)
    s.raw("ack 3")
    s.raw("eoi 3 8195")
    s.raw("ack 3")
    s.c("int dev=7, eventid=255 -> lpi=8196, col=2")
    s.int_(7, 255)
    s.raw("ack 2")
    s.raw("eoi 2 8196")
    s.c("disable 8195: dev2/eventid=20 does not trigger the LPI")
    s.lpi_config(8195, LPI_PROP_DISABLED)
    s.inv(2, 20)
    s.int_(2, 20)
    s.raw("ack 3")
    s.c("re-enable: the pending LPI is received once INVALL is done")
    s.lpi_config(8195, LPI_PROP_DEFAULT)
    s.invall(3)
    s.raw("ack 3")
    s.raw("eoi 3 8195")
    s.c("MAPD V=0: dev2/eventid=20 no longer triggers anything")
    s.mapd(2, 8, valid=False)
    s.int_(2, 20)
    s.raw("ack 3")
    s.raw("its_error")
    s.c("the same through GITS_TRANSLATER")
    s.raw("msi 2 20")
    s.raw("ack 3")
    s.raw("msi 7 255")
    s.raw("ack 2")
    s.raw("eoi 2 8196")
    return s


def migration():
    s = Script("""its-migration (kvm-unit-tests arm/gic.c test_its_migration):
the mappings survive save + restore into a fresh ITS.""")
    trigger_setup(s)
    s.raw("save")
    s.raw("restore")
    s.raw("rd32 gits 0x0")
    s.c("after migration: dev2/20 -> 8195 on cpu 3, dev7/255 -> 8196 on cpu 2")
    s.int_(2, 20)
    s.raw("ack 3")
    s.raw("eoi 3 8195")
    s.int_(7, 255)
    s.raw("ack 2")
    s.raw("eoi 2 8196")
    s.raw("msi 7 255")
    s.raw("ack 2")
    s.raw("eoi 2 8196")
    s.raw("its_error")
    return s


def migrate_unmapped_collection():
    s = Script("""its-migrate-unmapped-collection (kvm-unit-tests arm/gic.c
test_migrate_unmapped_collection): an ITE may point at a collection that is
not mapped; it survives migration and becomes deliverable once MAPC'd.""")
    s.gic_setup()
    s.its_setup()
    s.mapd(2, 8)
    s.c("collection 3 (target cpu 3) is created but not mapped")
    s.mapti(2, 0, 8192, 3)
    s.lpi_config(8192, LPI_PROP_DEFAULT)
    s.c("INT before MAPC: no target, E_ITS_INT_UNMAPPED_INTERRUPT")
    s.int_(2, 0)
    s.raw("its_error")
    s.raw("ack 3")
    s.raw("save")
    s.raw("restore")
    s.mapc(3, 3)
    s.invall(3)
    s.int_(2, 0)
    s.raw("ack 3")
    s.raw("eoi 3 8192")
    s.raw("its_error")
    return s


def pending_migration():
    s = Script("""its-pending-migration (kvm-unit-tests arm/gic.c
test_its_pending_migration): LPIs marked pending in the pending tables of
cpus 0 and 1 while EnableLPIs is clear are delivered after migration once
LPIs are enabled. (8 LPIs per cpu instead of 256.)""")
    s.gic_setup(enable_lpis=False)
    s.c("cpus 2 and 3 enable LPIs now (the ITS needs none)")
    s.enable_lpis([2, 3])
    s.its_setup()
    s.mapd(0, 8)
    s.mapd(1, 8)
    s.mapc(0, 0)
    s.mapc(1, 1)
    for i in range(8):
        s.mapti(0, i, 8192 + i, 0)
        s.mapti(1, i, 8192 + 8 + i, 1)
    for i in range(16):
        s.lpi_config(8192 + i, LPI_PROP_DEFAULT)
    s.c("pending bits set directly in the pending tables (bit n = INTID n)")
    s.raw("mem8 0x%x 0xff" % (s.pend + 0x400))
    s.raw("mem8 0x%x 0xff" % (s.pend + 0x10000 + 0x401))
    s.raw("save")
    s.raw("restore")
    s.c("enable LPIs on cpus 0 and 1: the pending LPIs arrive")
    s.enable_lpis([0, 1])
    for i in range(8):
        s.raw("ack 0")
        s.raw("eoi 0 %d" % (8192 + i))
    s.raw("ack 0")
    for i in range(8):
        s.raw("ack 1")
        s.raw("eoi 1 %d" % (8200 + i))
    s.raw("ack 1")
    s.raw("its_error")
    return s


def guest_style():
    s = Script("""Recorded-guest style: RAM at 1 GiB, 32-bit halves for every
64-bit register, a two-level device table, MOVI and a migration.""",
               vcpus=2, ram=(0x40000000, 0x40000000), halves=True)
    s.gic_setup()
    s.its_setup(indirect=True)
    s.mapd(0x10, 5)
    s.mapc(0, 0)
    s.mapc(1, 1)
    s.mapti(0x10, 3, 8300, 0)
    s.lpi_config(8300, LPI_PROP_DEFAULT)
    s.invall(0)
    s.sync(0)
    s.raw("msi 0x10 3")
    s.raw("ack 0")
    s.raw("eoi 0 8300")
    s.movi(0x10, 3, 1)
    s.sync(1)
    s.raw("msi 0x10 3")
    s.raw("ack 0")
    s.raw("ack 1")
    s.raw("eoi 1 8300")
    s.raw("rd32 gits 0x90")
    s.raw("rd32 gits 0x94")
    s.raw("save")
    s.raw("restore")
    s.raw("msi 0x10 3")
    s.raw("ack 1")
    s.raw("eoi 1 8300")
    s.c("MAPTI with an unmapped device")
    s.mapti(0x11, 0, 8301, 0)
    s.raw("its_error")
    return s


def main():
    out = sys.argv[1]
    for name, fn in [("its-introspection", introspection),
                     ("its-trigger", trigger),
                     ("its-migration", migration),
                     ("its-migrate-unmapped-collection",
                      migrate_unmapped_collection),
                     ("its-pending-migration", pending_migration),
                     ("guest-style", guest_style)]:
        with open(os.path.join(out, name + ".script"), "w") as f:
            f.write(fn().text())


if __name__ == "__main__":
    main()
