/*
 * Host-error injection for the nested tests: an LD_PRELOAD library for L2's
 * QEMU (in L1) that makes chosen iommufd and vfio requests fail, as a host
 * kernel may (out of memory, a busy object, a device that refuses).  Tests
 * only: never part of a QEMU build.
 *
 * The requests it knows are those a vIOMMU makes for hardware nested
 * translation:
 *   HWPT_ALLOC        IOMMU_HWPT_ALLOC
 *   HWPT_INVALIDATE   IOMMU_HWPT_INVALIDATE
 *   DESTROY           IOMMU_DESTROY
 *   ATTACH            VFIO_DEVICE_ATTACH_IOMMUFD_PT without a PASID
 *   ATTACH_PASID      VFIO_DEVICE_ATTACH_IOMMUFD_PT with VFIO_DEVICE_ATTACH_PASID
 *   DETACH            VFIO_DEVICE_DETACH_IOMMUFD_PT without a PASID
 *   DETACH_PASID      VFIO_DEVICE_DETACH_IOMMUFD_PT with VFIO_DEVICE_DETACH_PASID
 *   VIOMMU_ALLOC      IOMMU_VIOMMU_ALLOC
 *   VDEVICE_ALLOC     IOMMU_VDEVICE_ALLOC
 *
 * Environment:
 *   RVIOMMU_FAIL_CTL=PATH  a file holding the rule "NAME NTH ERRNO [DONE]":
 *                          the NTH request NAME made after the rule was
 *                          written fails with ERRNO (a number or EINVAL,
 *                          ENOMEM, EBUSY, EFAULT, ENODEV, EIO, EOPNOTSUPP);
 *                          NTH '*' fails every one.  For HWPT_INVALIDATE,
 *                          DONE is how many entries the host reports carried
 *                          out before the failure (default 0).  The file is
 *                          read at each request it knows: a test changes the
 *                          rule while QEMU runs (writing it again, even the
 *                          same text, starts the count again); an empty or
 *                          missing file fails nothing.
 *   RVIOMMU_FAIL_LOG=PATH  one line per such request: its name, result and
 *                          the object ids it names, "injected" when failed
 *                          here.  The kernel's answers, so a test can count
 *                          the HWPTs left allocated.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* linux/iommufd.h and linux/vfio.h (uAPI: stable numbers and layouts). */
#define IOMMUFD_TYPE ';'
#define VFIO_TYPE ';'
#define VFIO_BASE 100
#define REQ_DESTROY _IO(IOMMUFD_TYPE, 0x80)
#define REQ_HWPT_ALLOC _IO(IOMMUFD_TYPE, 0x89)
#define REQ_HWPT_INVALIDATE _IO(IOMMUFD_TYPE, 0x8d)
#define REQ_VIOMMU_ALLOC _IO(IOMMUFD_TYPE, 0x90)
#define REQ_VDEVICE_ALLOC _IO(IOMMUFD_TYPE, 0x91)
#define REQ_ATTACH _IO(VFIO_TYPE, VFIO_BASE + 19)
#define REQ_DETACH _IO(VFIO_TYPE, VFIO_BASE + 20)

struct destroy_arg { uint32_t size, id; };
struct hwpt_alloc_arg {
    uint32_t size, flags, dev_id, pt_id, out_hwpt_id, reserved, data_type, data_len;
    uint64_t data_uptr;
};
struct hwpt_invalidate_arg {
    uint32_t size, hwpt_id;
    uint64_t data_uptr;
    uint32_t data_type, entry_len, entry_num, reserved;
};
struct viommu_alloc_arg { uint32_t size, flags, type, dev_id, hwpt_id, out_viommu_id; };
struct vdevice_alloc_arg { uint32_t viommu_id, dev_id, out_vdevice_id, reserved; uint64_t virt_id; };
struct attach_arg { uint32_t argsz, flags, pt_id, pasid; };
struct detach_arg { uint32_t argsz, flags, pasid; };

static int (*real_ioctl)(int, unsigned long, ...);
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char rule[256];          /* the control file's content last read */
static struct timespec written; /* and its modification time */
static unsigned long seen;      /* requests of the rule's name since then */

static const struct { const char *name; int value; } errnos[] = {
    { "EINVAL", EINVAL }, { "ENOMEM", ENOMEM }, { "EBUSY", EBUSY }, { "EFAULT", EFAULT },
    { "ENODEV", ENODEV }, { "EIO", EIO }, { "EOPNOTSUPP", EOPNOTSUPP },
};

static const char *request_name(unsigned long req, void *arg)
{
    switch (req) {
    case REQ_DESTROY: return "DESTROY";
    case REQ_HWPT_ALLOC: return "HWPT_ALLOC";
    case REQ_HWPT_INVALIDATE: return "HWPT_INVALIDATE";
    case REQ_VIOMMU_ALLOC: return "VIOMMU_ALLOC";
    case REQ_VDEVICE_ALLOC: return "VDEVICE_ALLOC";
    case REQ_ATTACH: return ((struct attach_arg *)arg)->flags & 1 ? "ATTACH_PASID" : "ATTACH";
    case REQ_DETACH: return ((struct detach_arg *)arg)->flags & 1 ? "DETACH_PASID" : "DETACH";
    default: return NULL;
    }
}

/* Whether this request fails (and with what errno, what DONE), by the rule. */
static int should_fail(const char *name, int *err, uint32_t *done)
{
    const char *path = getenv("RVIOMMU_FAIL_CTL");
    char now[sizeof(rule)] = "", rname[64], nth[32], ename[32];
    struct stat st = { 0 };
    unsigned long n;
    int fd, len, fields, i;

    if (!path) {
        return 0;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        len = read(fd, now, sizeof(now) - 1);
        now[len > 0 ? len : 0] = '\0';
        fstat(fd, &st);
        close(fd);
    }
    /* A rule written again (the same text too) counts from 0 again. */
    if (strcmp(now, rule) != 0 || st.st_mtim.tv_sec != written.tv_sec ||
        st.st_mtim.tv_nsec != written.tv_nsec) {
        memcpy(rule, now, sizeof(rule));
        written = st.st_mtim;
        seen = 0;
    }
    *done = 0;
    fields = sscanf(rule, "%63s %31s %31s %u", rname, nth, ename, done);
    if (fields < 3 || strcmp(rname, name) != 0) {
        return 0;
    }
    seen++;
    if (strcmp(nth, "*") != 0) {
        n = strtoul(nth, NULL, 0);
        if (n != seen) {
            return 0;
        }
    }
    *err = atoi(ename);
    for (i = 0; i < (int)(sizeof(errnos) / sizeof(errnos[0])); i++) {
        if (strcmp(ename, errnos[i].name) == 0) {
            *err = errnos[i].value;
        }
    }
    if (*err <= 0) {
        *err = EINVAL;
    }
    return 1;
}

static void log_request(const char *name, unsigned long req, void *arg, int ret, int err,
                        int injected)
{
    const char *path = getenv("RVIOMMU_FAIL_LOG");
    char ids[128] = "";
    FILE *f;

    if (!path) {
        return;
    }
    switch (req) {
    case REQ_DESTROY:
        snprintf(ids, sizeof(ids), " id=%u", ((struct destroy_arg *)arg)->id);
        break;
    case REQ_HWPT_ALLOC: {
        struct hwpt_alloc_arg *a = arg;
        snprintf(ids, sizeof(ids), " pt=%u id=%u", a->pt_id, ret == 0 ? a->out_hwpt_id : 0);
        break;
    }
    case REQ_HWPT_INVALIDATE: {
        struct hwpt_invalidate_arg *a = arg;
        snprintf(ids, sizeof(ids), " hwpt=%u done=%u", a->hwpt_id, a->entry_num);
        break;
    }
    case REQ_VIOMMU_ALLOC: {
        struct viommu_alloc_arg *a = arg;
        snprintf(ids, sizeof(ids), " id=%u", ret == 0 ? a->out_viommu_id : 0);
        break;
    }
    case REQ_VDEVICE_ALLOC: {
        struct vdevice_alloc_arg *a = arg;
        snprintf(ids, sizeof(ids), " id=%u", ret == 0 ? a->out_vdevice_id : 0);
        break;
    }
    case REQ_ATTACH: {
        struct attach_arg *a = arg;
        snprintf(ids, sizeof(ids), " pt=%u pasid=%u", a->pt_id, a->pasid);
        break;
    }
    case REQ_DETACH:
        snprintf(ids, sizeof(ids), " pasid=%u", ((struct detach_arg *)arg)->pasid);
        break;
    }
    f = fopen(path, "ae");
    if (f) {
        fprintf(f, "%s ret=%d errno=%d%s%s\n", name, ret, ret ? err : 0, ids,
                injected ? " injected" : "");
        fclose(f);
    }
}

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    void *arg;
    const char *name;
    int ret, err = 0, injected;
    uint32_t done = 0;

    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (!real_ioctl) {
        real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
    }
    name = arg ? request_name(req, arg) : NULL;
    if (!name) {
        return real_ioctl(fd, req, arg);
    }
    pthread_mutex_lock(&lock);
    injected = should_fail(name, &err, &done);
    if (injected && req == REQ_HWPT_INVALIDATE) {
        /* The host carries out the first DONE entries, then fails. */
        struct hwpt_invalidate_arg *a = arg;
        if (done > a->entry_num) {
            done = a->entry_num;
        }
        a->entry_num = done;
        if (done > 0 && real_ioctl(fd, req, arg) != 0) {
            err = errno;        /* a real failure: the kernel's entry_num */
            injected = 0;
        }
        ret = -1;
    } else if (injected) {
        ret = -1;
    } else {
        ret = real_ioctl(fd, req, arg);
        err = errno;
    }
    log_request(name, req, arg, ret, err, injected);
    pthread_mutex_unlock(&lock);
    errno = err;
    return ret;
}
