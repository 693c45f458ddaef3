/*
 * QTest testcase: intel-iommu translation with the rviommu-testdev PCIe DMA
 * test device (docs/rviommu/testdev.rst), in legacy and scalable mode.
 *
 * The test plays the guest driver: it builds root/context/PASID tables and
 * page tables in guest RAM, enables translation, and has the device DMA at
 * an IOVA, without a PASID (requests go through RID_PASID in scalable
 * mode) or with one (ATS translation requests, as QEMU devices issue
 * PASID-tagged requests). Where the data lands tells the translation used.
 * The Python qtests (tests/functional/x86_64/test_vtd_*testdev.py) cover
 * the same ground in more depth; this file keeps a libqtest version that
 * runs from QEMU's own build (make check-qtest-x86_64).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest.h"

#define VTD_BASE            0xfed90000ULL
#define VTD_CAP             0x08
#define VTD_ECAP            0x10
#define VTD_GCMD            0x18
#define VTD_GSTS            0x1c
#define VTD_RTADDR          0x20
#define VTD_FSTS            0x34
#define VTD_IQH             0x80
#define VTD_IQT             0x88
#define VTD_IQA             0x90
#define GCMD_TE             (1u << 31)
#define GCMD_SRTP           (1u << 30)
#define GCMD_QIE            (1u << 26)
#define FSTS_PPF            (1u << 1)
#define FSTS_IQE            (1u << 4)
#define RTADDR_TTM_SCALABLE (1ULL << 10)
#define IQA_DW_256          (1ULL << 11)
#define CAP_CM              (1ULL << 7)

#define PCIEXBAR            0xb0000000ULL
#define TD_DEVFN            0x28            /* 00:05.0 */
#define TD_BAR0             0xfe100000ULL
#define TD_ID               0x00
#define TD_IOVA             0x08
#define TD_LEN              0x10
#define TD_PASID            0x14
#define TD_CMD              0x18
#define TD_STATUS           0x1c
#define TD_XLATE            0x28
#define TD_ATC_CTRL         0x38
#define TD_NOTIFIER         0x40
#define TD_MIRROR_MAPS      0x48
#define TD_MIRROR_LEN       0x50
#define TD_BUFFER           0x1000
#define TD_OP_WRITE         2
#define TD_OP_READ          1
#define TD_CMD_ATS          (1u << 4)
#define TD_CMD_MIRROR       (1u << 5)
#define TD_PASID_VALID      (1u << 31)
#define TD_STATUS_OK        1
#define TD_STATUS_DMA_ERROR 2
#define TD_ATS_CAP          0x100
#define TD_PASID_CAP        0x120

#define PGTT_FS             1
#define PGTT_SS             2
#define PGTT_NESTED         3
#define PGTT_PT             4
#define SL_RW               3ULL
#define FS_P_RW_US          7ULL
#define ADDR_MASK           0x000ffffffffff000ULL

#define IOVA                0x300000ULL
#define PHYS                0x600000ULL
#define PHYS2               0x700000ULL
#define GPA_OUT             0x500000ULL     /* nested: first-stage output */
#define FS_TABLE_IOVA       0x4000000ULL    /* nested: first-stage tables */
#define PASID               5
#define DID                 3
#define DID2                4

typedef struct Vtd {
    QTestState *qts;
    uint64_t next_page;
    uint64_t root;
    uint64_t queue;
    uint32_t tail;
    uint64_t wait_status;
    uint32_t marker;
    bool scalable;
} Vtd;

typedef struct FsTables {
    Vtd *vtd;
    uint64_t root;          /* address the IOMMU walks (IOVA when nested) */
    uint64_t ss;            /* nested: second stage mapping table IOVAs */
    uint64_t next_iova;
    /* table address as walked -> RAM address, for the few tables used */
    uint64_t addr[16], ram[16];
    int n;
} FsTables;

static uint64_t alloc_page(Vtd *v)
{
    static const uint8_t zero[0x1000];
    uint64_t page = v->next_page;

    g_assert_cmphex(page, <, 0x200000);
    v->next_page += 0x1000;
    qtest_memwrite(v->qts, page, zero, sizeof(zero));
    return page;
}

static uint64_t reg_readq(Vtd *v, uint64_t off)
{
    return qtest_readq(v->qts, VTD_BASE + off);
}

static uint32_t reg_readl(Vtd *v, uint64_t off)
{
    return qtest_readl(v->qts, VTD_BASE + off);
}

static void gcmd(Vtd *v, uint32_t bit)
{
    uint32_t persistent = reg_readl(v, VTD_GSTS) & 0x96ffffff;

    qtest_writel(v->qts, VTD_BASE + VTD_GCMD, persistent | bit);
    g_assert_cmphex(reg_readl(v, VTD_GSTS) & bit, ==, bit);
}

static void pci_cfg_writel(QTestState *qts, int devfn, int reg, uint32_t val)
{
    qtest_outl(qts, 0xcf8, 0x80000000u | (devfn << 8) | reg);
    qtest_outl(qts, 0xcfc, val);
}

static Vtd *vtd_start(const char *iommu_props, bool scalable)
{
    Vtd *v = g_new0(Vtd, 1);
    uint64_t cfg = PCIEXBAR + ((uint64_t)TD_DEVFN << 12);

    v->qts = qtest_initf("-M q35 -nodefaults -display none "
                         "-device intel-iommu%s%s "
                         "-device rviommu-testdev,addr=05.0",
                         *iommu_props ? "," : "", iommu_props);
    v->scalable = scalable;
    v->next_page = 0x100000;
    v->root = alloc_page(v);
    /* PCIe extended configuration space (ECAM), as firmware would map it */
    pci_cfg_writel(v->qts, 0, 0x64, 0);
    pci_cfg_writel(v->qts, 0, 0x60, PCIEXBAR | 1);
    pci_cfg_writel(v->qts, TD_DEVFN, 0x10, TD_BAR0);
    pci_cfg_writel(v->qts, TD_DEVFN, 0x04, 0x6);
    g_assert_cmphex(qtest_readl(v->qts, TD_BAR0 + TD_ID), ==, 0x44545652);
    g_assert_cmphex(qtest_readl(v->qts, cfg + TD_ATS_CAP) & 0xffff, ==, 0x0f);
    g_assert_cmphex(qtest_readl(v->qts, cfg + TD_PASID_CAP) & 0xffff, ==, 0x1b);
    qtest_writew(v->qts, cfg + TD_ATS_CAP + 6, 1u << 15);       /* ATS enable */
    qtest_writew(v->qts, cfg + TD_PASID_CAP + 6, 7);            /* PASID, exec, priv */
    return v;
}

static void vtd_free(Vtd *v)
{
    qtest_quit(v->qts);
    g_free(v);
}

static void enable(Vtd *v)
{
    qtest_writeq(v->qts, VTD_BASE + VTD_RTADDR,
                 v->root | (v->scalable ? RTADDR_TTM_SCALABLE : 0));
    gcmd(v, GCMD_SRTP);
    gcmd(v, GCMD_TE);
    v->queue = alloc_page(v);
    v->wait_status = alloc_page(v);
    qtest_writeq(v->qts, VTD_BASE + VTD_IQA, v->queue | (v->scalable ? IQA_DW_256 : 0));
    qtest_writeq(v->qts, VTD_BASE + VTD_IQT, 0);
    gcmd(v, GCMD_QIE);
}

/*
 * Submit one descriptor (two quadwords; the upper half of a 256-bit one
 * is zero) and an invalidation wait, and check that both completed.
 */
static void invalidate(Vtd *v, uint64_t lo, uint64_t hi)
{
    int shift = v->scalable ? 5 : 4;
    uint64_t descs[2][2] = {
        { lo, hi },
        { 0x5 | (1 << 5) | ((uint64_t)(0x5a000000 | ++v->marker) << 32), v->wait_status },
    };

    for (int i = 0; i < 2; i++) {
        uint64_t at = v->queue + ((uint64_t)v->tail << shift);
        qtest_writeq(v->qts, at, descs[i][0]);
        qtest_writeq(v->qts, at + 8, descs[i][1]);
        if (v->scalable) {
            qtest_writeq(v->qts, at + 16, 0);
            qtest_writeq(v->qts, at + 24, 0);
        }
        v->tail = (v->tail + 1) % (0x1000 >> shift);
    }
    qtest_writeq(v->qts, VTD_BASE + VTD_IQT, (uint64_t)v->tail << shift);
    g_assert_cmphex(reg_readl(v, VTD_FSTS) & FSTS_IQE, ==, 0);
    g_assert_cmphex(qtest_readl(v->qts, v->wait_status), ==, 0x5a000000 | v->marker);
    g_assert_cmphex(reg_readq(v, VTD_IQH), ==, (uint64_t)v->tail << shift);
}

/* Second-stage tables (4-level): map the 4 KiB page at iova to phys. */
static void ss_map(Vtd *v, uint64_t top, uint64_t iova, uint64_t phys)
{
    uint64_t table = top;

    for (int level = 4; level > 1; level--) {
        uint64_t at = table + ((iova >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
        uint64_t e = qtest_readq(v->qts, at);
        if (!(e & SL_RW)) {
            e = alloc_page(v) | SL_RW;
            qtest_writeq(v->qts, at, e);
        }
        table = e & ADDR_MASK;
    }
    qtest_writeq(v->qts, table + ((iova >> 12) & 0x1ff) * 8, (phys & ADDR_MASK) | SL_RW);
}

static uint64_t fs_table(FsTables *fs, uint64_t *ram)
{
    uint64_t page = alloc_page(fs->vtd), addr = page;

    g_assert_cmpint(fs->n, <, 16);
    if (fs->ss) {
        addr = fs->next_iova;
        fs->next_iova += 0x1000;
        ss_map(fs->vtd, fs->ss, addr, page);
    }
    fs->addr[fs->n] = addr;
    fs->ram[fs->n++] = page;
    *ram = page;
    return addr;
}

static uint64_t fs_ram(FsTables *fs, uint64_t addr)
{
    for (int i = 0; i < fs->n; i++) {
        if (fs->addr[i] == (addr & ADDR_MASK)) {
            return fs->ram[i];
        }
    }
    g_assert_not_reached();
}

/*
 * First-stage (4-level x86-64 format) tables; with `ss` (nested) they live
 * at IOVAs that the second stage `ss` maps to the RAM pages holding them.
 */
static void fs_init(FsTables *fs, Vtd *v, uint64_t ss)
{
    uint64_t ram;

    memset(fs, 0, sizeof(*fs));
    fs->vtd = v;
    fs->ss = ss;
    fs->next_iova = FS_TABLE_IOVA;
    fs->root = fs_table(fs, &ram);
}

static void fs_map(FsTables *fs, uint64_t va, uint64_t out)
{
    QTestState *qts = fs->vtd->qts;
    uint64_t table = fs->root, ram;

    for (int level = 4; level > 1; level--) {
        uint64_t at = fs_ram(fs, table) + ((va >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
        uint64_t e = qtest_readq(qts, at);
        if (!(e & 1)) {
            e = fs_table(fs, &ram) | FS_P_RW_US;
            qtest_writeq(qts, at, e);
        }
        table = e & ADDR_MASK;
    }
    qtest_writeq(qts, fs_ram(fs, table) + ((va >> 12) & 0x1ff) * 8,
                 (out & ADDR_MASK) | FS_P_RW_US);
}

/* Legacy context entry of the test device. */
static void legacy_context(Vtd *v, uint64_t slptptr, int tt, int did)
{
    uint64_t ctx = alloc_page(v);

    qtest_writeq(v->qts, v->root, ctx | 1);
    qtest_writeq(v->qts, ctx + TD_DEVFN * 16, (slptptr & ADDR_MASK) | (tt << 2) | 1);
    qtest_writeq(v->qts, ctx + TD_DEVFN * 16 + 8, 2 | (did << 8));  /* AW 4-level */
}

/*
 * Scalable context entry of the test device (PASID and device-TLB enabled)
 * with a PASID directory; returns the directory.
 */
static uint64_t sm_context(Vtd *v)
{
    uint64_t ctx = alloc_page(v), pdir = alloc_page(v);

    qtest_writeq(v->qts, v->root, ctx | 1);
    qtest_writeq(v->qts, ctx + (TD_DEVFN & 0x7f) * 32, pdir | (1 << 3) | (1 << 2) | 1);
    return pdir;
}

static void pasid_entry(Vtd *v, uint64_t pdir, uint32_t pasid, int pgtt, int did,
                        uint64_t slptptr, uint64_t flptptr)
{
    uint64_t de = qtest_readq(v->qts, pdir + (pasid >> 6) * 8), table, at;

    if (!(de & 1)) {
        de = alloc_page(v) | 1;
        qtest_writeq(v->qts, pdir + (pasid >> 6) * 8, de);
    }
    table = de & ADDR_MASK;
    at = table + (pasid & 0x3f) * 64;
    qtest_writeq(v->qts, at, (slptptr & ADDR_MASK) | (pgtt << 6) | (2 << 2) | 1);
    qtest_writeq(v->qts, at + 8, did);
    qtest_writeq(v->qts, at + 16, flptptr & ADDR_MASK);
}

/*
 * The device DMAs `len` bytes: untranslated without a PASID (pasid < 0),
 * else through ATS with the PASID (device-TLB flushed first). Returns the
 * status code.
 */
static int td_dma(Vtd *v, int op, int64_t pasid, uint64_t iova, uint32_t len, uint32_t extra)
{
    QTestState *qts = v->qts;

    qtest_writel(qts, TD_BAR0 + TD_ATC_CTRL, 1);
    qtest_writeq(qts, TD_BAR0 + TD_IOVA, iova);
    qtest_writel(qts, TD_BAR0 + TD_LEN, len);
    qtest_writel(qts, TD_BAR0 + TD_PASID, pasid < 0 ? 0 : TD_PASID_VALID | pasid);
    qtest_writel(qts, TD_BAR0 + TD_CMD, op | (pasid < 0 ? 0 : TD_CMD_ATS) | extra);
    return qtest_readl(qts, TD_BAR0 + TD_STATUS) & 0xff;
}

/* A write by the device at (pasid, iova) lands at phys, not at `decoy`. */
static void check_write(Vtd *v, int64_t pasid, uint64_t iova, uint64_t phys, uint64_t decoy)
{
    uint8_t data[64], got[64];
    static uint8_t seed;

    for (int i = 0; i < sizeof(data); i++) {
        data[i] = i * 29 + (++seed) * 71;
    }
    qtest_memwrite(v->qts, TD_BAR0 + TD_BUFFER, data, sizeof(data));
    g_assert_cmpint(td_dma(v, TD_OP_WRITE, pasid, iova, sizeof(data), 0), ==, TD_STATUS_OK);
    qtest_memread(v->qts, phys, got, sizeof(got));
    g_assert(!memcmp(got, data, sizeof(data)));
    qtest_memread(v->qts, decoy, got, sizeof(got));
    g_assert(memcmp(got, data, sizeof(data)));
    if (pasid >= 0) {
        g_assert_cmphex(qtest_readq(v->qts, TD_BAR0 + TD_XLATE), ==, phys);
    }
    g_assert_cmphex(reg_readl(v, VTD_FSTS) & FSTS_PPF, ==, 0);
}

static uint8_t read_byte(Vtd *v, int64_t pasid, uint64_t iova, uint32_t extra)
{
    g_assert_cmpint(td_dma(v, TD_OP_READ, pasid, iova, 1, extra), ==, TD_STATUS_OK);
    return qtest_readb(v->qts, TD_BAR0 + TD_BUFFER);
}

static void test_legacy_second_stage(void)
{
    Vtd *v = vtd_start("", false);
    uint64_t top = alloc_page(v);

    ss_map(v, top, IOVA, PHYS);
    legacy_context(v, top, 0, DID);
    enable(v);
    check_write(v, -1, IOVA, PHYS, IOVA);
    /* Unmapped: a DMA error and a fault record with reason 6 (PTE not present) */
    g_assert_cmpint(td_dma(v, TD_OP_READ, -1, IOVA + 0x1000, 8, 0), ==, TD_STATUS_DMA_ERROR);
    g_assert_cmphex(reg_readl(v, VTD_FSTS) & FSTS_PPF, ==, FSTS_PPF);
    vtd_free(v);
}

static void test_legacy_pass_through(void)
{
    Vtd *v = vtd_start("", false);

    legacy_context(v, 0, 2, DID);
    enable(v);
    check_write(v, -1, IOVA, IOVA, PHYS);
    vtd_free(v);
}

static Vtd *modern(void)
{
    return vtd_start("x-scalable-mode=modern,device-iotlb=on", true);
}

static void test_modern_pass_through(void)
{
    Vtd *v = modern();
    uint64_t pdir = sm_context(v);

    pasid_entry(v, pdir, 0, PGTT_PT, DID, 0, 0);
    pasid_entry(v, pdir, PASID, PGTT_PT, DID2, 0, 0);
    enable(v);
    check_write(v, -1, IOVA, IOVA, PHYS);
    check_write(v, PASID, IOVA + 0x1000, IOVA + 0x1000, PHYS);
    vtd_free(v);
}

static void test_modern_second_stage(void)
{
    Vtd *v = modern();
    uint64_t pdir = sm_context(v), top0 = alloc_page(v), top5 = alloc_page(v);

    ss_map(v, top0, IOVA, PHYS);
    ss_map(v, top5, IOVA, PHYS2);
    pasid_entry(v, pdir, 0, PGTT_SS, DID, top0, 0);
    pasid_entry(v, pdir, PASID, PGTT_SS, DID2, top5, 0);
    enable(v);
    check_write(v, -1, IOVA, PHYS, PHYS2);
    check_write(v, PASID, IOVA, PHYS2, PHYS);
    vtd_free(v);
}

static void test_modern_first_stage(void)
{
    Vtd *v = modern();
    uint64_t pdir = sm_context(v);
    FsTables fs0, fs5;

    fs_init(&fs0, v, 0);
    fs_init(&fs5, v, 0);
    fs_map(&fs0, IOVA, PHYS);
    fs_map(&fs5, IOVA, PHYS2);
    pasid_entry(v, pdir, 0, PGTT_FS, DID, 0, fs0.root);
    pasid_entry(v, pdir, PASID, PGTT_FS, DID2, 0, fs5.root);
    enable(v);
    check_write(v, -1, IOVA, PHYS, PHYS2);
    check_write(v, PASID, IOVA, PHYS2, PHYS);
    vtd_free(v);
}

static void test_modern_nested(void)
{
    Vtd *v = modern();
    uint64_t pdir = sm_context(v), ss = alloc_page(v);
    FsTables fs;

    /* The first stage outputs GPA_OUT and lives at IOVAs: both go through ss. */
    ss_map(v, ss, GPA_OUT, PHYS);
    ss_map(v, ss, GPA_OUT + 0x1000, PHYS2);
    fs_init(&fs, v, ss);
    g_assert_cmphex(fs.root, !=, fs.ram[0]);
    fs_map(&fs, IOVA, GPA_OUT);
    fs_map(&fs, IOVA + 0x1000, GPA_OUT + 0x1000);
    pasid_entry(v, pdir, 0, PGTT_NESTED, DID, ss, fs.root);
    pasid_entry(v, pdir, PASID, PGTT_NESTED, DID2, ss, fs.root);
    enable(v);
    check_write(v, -1, IOVA, PHYS, GPA_OUT);
    check_write(v, PASID, IOVA + 0x1000, PHYS2, GPA_OUT + 0x1000);
    vtd_free(v);
}

static void test_modern_stale_until_pasid_iotlb_invalidation(void)
{
    Vtd *v = modern();
    uint64_t pdir = sm_context(v);
    FsTables fs;

    qtest_memset(v->qts, PHYS, 0x11, 0x1000);
    qtest_memset(v->qts, PHYS2, 0x22, 0x1000);
    fs_init(&fs, v, 0);
    fs_map(&fs, IOVA, PHYS);
    pasid_entry(v, pdir, 0, PGTT_FS, DID, 0, fs.root);
    enable(v);
    g_assert_cmphex(read_byte(v, -1, IOVA, 0), ==, 0x11);
    fs_map(&fs, IOVA, PHYS2);
    /* Another PASID's page, then another domain: the IOTLB entry stays. */
    invalidate(v, 0x6 | (0x3 << 4) | (DID << 16) | (7ULL << 32), IOVA);
    invalidate(v, 0x6 | (0x2 << 4) | (DID2 << 16), 0);
    g_assert_cmphex(read_byte(v, -1, IOVA, 0), ==, 0x11);
    /* PASID-based IOTLB invalidation of the page in PASID 0 (RID_PASID) */
    invalidate(v, 0x6 | (0x3 << 4) | (DID << 16), IOVA);
    g_assert_cmphex(read_byte(v, -1, IOVA, 0), ==, 0x22);
    vtd_free(v);
}

static void test_modern_pasid_entry_not_present_fault(void)
{
    Vtd *v = modern();
    uint64_t pdir = sm_context(v), off, hi;

    pasid_entry(v, pdir, 0, PGTT_PT, DID, 0, 0);
    /* P = 0, the type kept (a zeroed entry's reserved type is found first
     * under the C device's rules, our default) */
    {
        uint64_t pe = qtest_readq(v->qts, pdir) & ADDR_MASK;
        qtest_writeq(v->qts, pe, qtest_readq(v->qts, pe) & ~1ULL);
    }
    enable(v);
    g_assert_cmpint(td_dma(v, TD_OP_READ, -1, IOVA, 8, 0), ==, TD_STATUS_DMA_ERROR);
    g_assert_cmphex(reg_readl(v, VTD_FSTS) & FSTS_PPF, ==, FSTS_PPF);
    off = ((reg_readq(v, VTD_CAP) >> 24) & 0x3ff) * 16;
    hi = reg_readq(v, off + 8);
    g_assert_cmphex(hi >> 63, ==, 1);                       /* F */
    g_assert_cmphex((hi >> 32) & 0xff, ==, 0x59);           /* PASID-table entry not present */
    g_assert_cmphex(hi & 0xffff, ==, TD_DEVFN);             /* SID */
    g_assert_cmphex((hi >> 31) & 1, ==, 0);                 /* no PASID in the request */
    g_assert_cmphex(reg_readq(v, off) & ADDR_MASK, ==, IOVA);
    vtd_free(v);
}

static void test_caching_mode_map_notifier(void)
{
    Vtd *v = vtd_start("caching-mode=on", false);
    uint64_t top = alloc_page(v);

    g_assert_cmphex(reg_readq(v, VTD_CAP) & CAP_CM, ==, CAP_CM);
    qtest_memset(v->qts, PHYS, 0x11, 0x1000);
    qtest_memset(v->qts, PHYS2, 0x22, 0x1000);
    ss_map(v, top, IOVA, PHYS);
    legacy_context(v, top, 0, DID);
    enable(v);
    /* The device's mirror (a vfio-like MAP/UNMAP notifier) gets a replay */
    qtest_writel(v->qts, TD_BAR0 + TD_NOTIFIER, 1);
    g_assert_cmphex(qtest_readl(v->qts, TD_BAR0 + TD_NOTIFIER), ==, 1);
    g_assert_cmphex(qtest_readl(v->qts, TD_BAR0 + TD_MIRROR_MAPS), ==, 1);
    g_assert_cmphex(read_byte(v, -1, IOVA, TD_CMD_MIRROR), ==, 0x11);
    /* A new page reaches it at its page-selective IOTLB invalidation only */
    ss_map(v, top, IOVA + 0x1000, PHYS2);
    g_assert_cmpint(td_dma(v, TD_OP_READ, -1, IOVA + 0x1000, 1, TD_CMD_MIRROR), !=,
                    TD_STATUS_OK);
    invalidate(v, 0x2 | (0x3 << 4) | (DID << 16), IOVA + 0x1000);
    g_assert_cmphex(qtest_readl(v->qts, TD_BAR0 + TD_MIRROR_LEN), ==, 2);
    g_assert_cmphex(read_byte(v, -1, IOVA + 0x1000, TD_CMD_MIRROR), ==, 0x22);
    vtd_free(v);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_add_func("/rviommu/testdev/legacy/second-stage", test_legacy_second_stage);
    qtest_add_func("/rviommu/testdev/legacy/pass-through", test_legacy_pass_through);
    qtest_add_func("/rviommu/testdev/modern/pass-through", test_modern_pass_through);
    qtest_add_func("/rviommu/testdev/modern/second-stage", test_modern_second_stage);
    qtest_add_func("/rviommu/testdev/modern/first-stage", test_modern_first_stage);
    qtest_add_func("/rviommu/testdev/modern/nested", test_modern_nested);
    qtest_add_func("/rviommu/testdev/modern/stale-until-pasid-iotlb-invalidation",
                   test_modern_stale_until_pasid_iotlb_invalidation);
    qtest_add_func("/rviommu/testdev/modern/pasid-entry-not-present",
                   test_modern_pasid_entry_not_present_fault);
    qtest_add_func("/rviommu/testdev/caching-mode/map-notifier",
                   test_caching_mode_map_notifier);
    return g_test_run();
}
