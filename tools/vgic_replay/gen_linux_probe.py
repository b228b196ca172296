#!/usr/bin/env python3
"""Writes testdata/linux-probe.script (stdout): Linux's GICv3 + ITS bring-up.

The expected output (linux-probe.expected) was checked by hand against the
spec and the driver's read-back checks (its_setup_baser requires every
written BASER field to read back unchanged).

Usage: tools/vgic_replay/gen_linux_probe.py > testdata/linux-probe.script
"""
import sys
L=[]
def w(s): L.append(s)
Q=0x40320000
cw=[0]
def cmd(dws, comment):
    w("# "+comment)
    for i,d in enumerate(dws):
        w("mem64 0x%x 0x%x" % (Q+cw[0]+8*i, d))
    cw[0]+=32
def post():
    w("wr64 gits 0x88 0x%x" % cw[0])
    w("rd32 gits 0x90")
def mapc(col, cpu): cmd([0x9,0,(1<<63)|(cpu<<16)|col,0], "MAPC col %d -> RDbase %d (cpu << 16), V=1" % (col,cpu))
def sync(cpu): cmd([0x5,0,cpu<<16,0], "SYNC RDbase %d" % cpu)
def invall(col): cmd([0xd,0,col,0], "INVALL col %d" % col)
def mapd(dev,bits,itt,v=1): cmd([0x8|(dev<<32),bits-1 if v else 0,((1<<63) if v else 0)|itt,0], "MAPD dev 0x%x, %d EventID bits, ITT 0x%x, V=%d" % (dev,bits,itt,v))
def mapti(dev,ev,lpi,col): cmd([0xa|(dev<<32),ev|(lpi<<32),col,0], "MAPTI dev 0x%x event %d -> LPI %d col %d" % (dev,ev,lpi,col))
def inv(dev,ev): cmd([0xc|(dev<<32),ev,0,0], "INV dev 0x%x event %d" % (dev,ev))
def movi(dev,ev,col): cmd([0x1|(dev<<32),ev,col,0], "MOVI dev 0x%x event %d -> col %d" % (dev,ev,col))
def discard(dev,ev): cmd([0xf|(dev<<32),ev,0,0], "DISCARD dev 0x%x event %d" % (dev,ev))
hdr = """# Linux (arm64, drivers/irqchip/irq-gic-v3.c + irq-gic-v3-its.c) bringing up
# a fresh GICv3 + ITS, in the order and with the access widths the driver
# uses: RAM at 1 GiB, 64-bit writes of 64-bit registers, 32-bit CREADR polls,
# the Indirect probe of the device BASER, 64 KiB pages, a two-level device
# table, MAPC+SYNC / INVALL per CPU, MAPD / MAPTI+SYNC / INV+SYNC per MSI,
# set_affinity (MOVI+SYNC) and teardown (DISCARD+SYNC, MAPD V=0).
# Every access here is legitimate: no error line, and its_error stays 0."""
for l in hdr.splitlines(): w(l)
w("vcpus 2")
w("ram 0x40000000 0x40000000")
w("# gic_init_bases: PIDR2.ArchRev, TYPER, IIDR, TYPER2")
w("rd32 gicd 0xffe8"); w("rd32 gicd 0x4"); w("rd32 gicd 0x8"); w("rd32 gicd 0xc")
w("# gic_dist_init: disable, SPIs group 1, level, prio 0xa0, inactive, disabled")
w("wr32 gicd 0x0 0x0"); w("rd32 gicd 0x0")
for i in (1,2): w("wr32 gicd 0x%x 0xffffffff" % (0x80+4*i))
for i in range(2,6): w("wr32 gicd 0x%x 0x0" % (0xc00+4*i))
for i in range(32//4, 96//4): w("wr32 gicd 0x%x 0xa0a0a0a0" % (0x400+4*i))
for i in (1,2): w("wr32 gicd 0x%x 0xffffffff" % (0x380+4*i)); w("wr32 gicd 0x%x 0xffffffff" % (0x180+4*i))
w("rd32 gicd 0x0")
w("# ARE_NS | EnableGrp1A | EnableGrp1 (bits 4, 1, 0), then route SPIs to CPU 0")
w("wr32 gicd 0x0 0x13"); w("rd32 gicd 0x0")
for i in range(32,96): w("wr64 gicd 0x%x 0x0" % (0x6000+8*i))
w("rd64 gicd 0x6100")
for cpu in (0,1):
    g="gicr%d"%cpu
    w("# gic_populate_rdist / gic_enable_redist on CPU %d" % cpu)
    w("rd32 %s 0xffe8" % g); w("rd64 %s 0x8" % g)
    w("rd32 %s 0x14" % g); w("wr32 %s 0x14 0x0" % g); w("rd32 %s 0x14" % g)
    w("# gic_cpu_config: SGI/PPI group 1, inactive, PPIs off, SGIs on, prio 0xa0")
    w("wr32 %s 0x10080 0xffffffff" % g); w("wr32 %s 0x10380 0xffffffff" % g)
    w("wr32 %s 0x10180 0xffff0000" % g); w("wr32 %s 0x10100 0xffff" % g)
    for i in range(8): w("wr32 %s 0x%x 0xa0a0a0a0" % (g,0x10400+4*i))
    w("rd32 %s 0x10" % g)
w("# its_probe_one: PIDR2, its_force_quiescent, TYPER")
w("rd32 gits 0xffe8"); w("rd32 gits 0x0"); w("rd64 gits 0x8")
w("# its_alloc_tables: read every BASER; device table: Indirect probe")
for i in range(8): w("rd64 gits 0x%x" % (0x100+8*i))
w("wr64 gits 0x100 0x7800000000000400"); w("rd64 gits 0x100")
w("# its_setup_baser: device table (two-level, 1 page of level-1 entries)")
w("wr64 gits 0x100 0xf907000040300600"); w("rd64 gits 0x100")
w("# its_setup_baser: collection table (flat, 1 page)")
w("wr64 gits 0x108 0xbc07000040310600"); w("rd64 gits 0x108")
w("# command queue: 64 KiB, RaWaWb, InnerShareable")
w("wr64 gits 0x80 0xb80000004032040f"); w("rd64 gits 0x80")
w("wr64 gits 0x88 0x0")
w("rd32 gits 0x0"); w("wr32 gits 0x0 0x80000001"); w("rd32 gits 0x0")
w("# LPI tables: 64 KiB property table (all LPIs prio 0xa0, Group1, disabled)")
for i in range(0, 64, 8): w("mem64 0x%x 0xa2a2a2a2a2a2a2a2" % (0x40100000+i))
for cpu in (0,1):
    g="gicr%d"%cpu
    w("# its_cpu_init_lpis on CPU %d: PROPBASER, PENDBASER, EnableLPIs" % cpu)
    w("rd32 %s 0x0" % g)
    w("wr64 %s 0x70 0x4010078f" % g); w("rd64 %s 0x70" % g)
    w("wr64 %s 0x78 0x%x" % (g, 0x40200780 + cpu*0x10000)); w("rd64 %s 0x78" % g)
    w("wr32 %s 0x0 0x1" % g); w("rd32 %s 0x0" % g)
    w("# its_cpu_init_collection on CPU %d" % cpu)
    mapc(cpu,cpu); sync(cpu); post()
    invall(cpu); post()
w("its_error")
w("# PCI device 00:01.0 (DeviceID 0x8), 2 MSIs: level-2 page for DeviceIDs 0..8191")
w("mem64 0x40300000 0x8000000040400000")
mapd(8,1,0x40500100); post()
for ev,lpi in ((0,8192),(1,8193)):
    mapti(8,ev,lpi,0); sync(0); post()
w("# unmask LPI 8192: Group1 | enable, then INV + SYNC")
w("mem8 0x40100000 0xa3")
inv(8,0); sync(0); post()
w("its_error")
w("msi 8 0")
w("msi 8 1  # LPI 8193 is still masked")
w("ack 1"); w("ack 0"); w("ack 0"); w("eoi 0 8192")
w("# set_affinity of LPI 8192 to CPU 1")
movi(8,0,1); sync(1); post()
w("msi 8 0"); w("ack 0"); w("ack 1"); w("eoi 1 8192")
w("# unmask LPI 8193: the MSI latched while masked is delivered now")
w("mem8 0x40100001 0xa3")
inv(8,1); sync(0); post()
w("ack 0"); w("eoi 0 8193"); w("ack 0")
w("# teardown: DISCARD + SYNC, then MAPD V=0")
discard(8,0); sync(1); post()
discard(8,1); sync(0); post()
mapd(8,1,0,v=0); post()
w("msi 8 0"); w("msi 8 1"); w("ack 0"); w("ack 1")
w("its_error")
w("rd32 gits 0x0")
print("\n".join(L))
