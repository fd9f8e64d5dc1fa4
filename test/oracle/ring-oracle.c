/*
 * ring-oracle: the real Xen public headers (libxen-dev) as an oracle for our
 * TypeScript rings and codecs (test/oracle/oracle.test.ts compiles and runs it).
 *
 *   ring-oracle layout
 *       prints one JSON object: sizeof/offsetof of every wire struct, RING_SIZE
 *       of each ring at ring-page-order 0..4, the protocol constants, and the
 *       bytes of sample entries (hex) filled field by field.
 *
 *   ring-oracle trace <blkif|tx|rx> <order> <start>
 *       reads one operation per line from stdin, runs it on a front and a back
 *       ring sharing one page set (indices starting at <start>) with the real
 *       ring.h macros, and prints one line per operation, then the hex of the
 *       whole shared region. The operations clamp themselves to what is legal:
 *         fput N   put min(N, RING_FREE_REQUESTS) requests
 *         fpush    RING_PUSH_REQUESTS_AND_CHECK_NOTIFY
 *         bcons N  RING_COPY_REQUEST min(N, unconsumed) requests
 *         bfinal   RING_FINAL_CHECK_FOR_REQUESTS
 *         bput N   answer min(N, consumed - answered) requests, in order
 *         bpush    RING_PUSH_RESPONSES_AND_CHECK_NOTIFY
 *         fcons N  RING_COPY_RESPONSE min(N, unconsumed) responses
 *         ffinal   RING_FINAL_CHECK_FOR_RESPONSES
 *         free     RING_FREE_REQUESTS
 *         bunc     RING_HAS_UNCONSUMED_REQUESTS
 *         func     RING_HAS_UNCONSUMED_RESPONSES
 *
 * Build: gcc -std=gnu11 -Wall -Wextra -D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__
 */
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/*
 * With __XEN_INTERFACE_VERSION__ >= 0x00030208 ring.h leaves xen_mb/xen_rmb/
 * xen_wmb to the includer (Xen's tools take them from xenctrl.h). The oracle is
 * single-threaded, so any fence is correct; use the C11 ones the names imply.
 */
#define xen_mb()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define xen_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define xen_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)
#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/event_channel.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>

#define PAGE 4096
#define MAX_PAGES 16

static int first_field;

static void obj_begin(const char *name)
{
    printf("%s\"%s\":{", first_field ? "" : ",", name);
    first_field = 1;
}
static void obj_end(void)
{
    printf("}");
    first_field = 0;
}
static void num(const char *name, long long v)
{
    printf("%s\"%s\":%lld", first_field ? "" : ",", name, v);
    first_field = 0;
}
static void hex(const char *name, const void *p, size_t n)
{
    const unsigned char *b = p;
    printf("%s\"%s\":\"", first_field ? "" : ",", name);
    for (size_t i = 0; i < n; i++)
        printf("%02x", b[i]);
    printf("\"");
    first_field = 0;
}

#define SZ(t) num("sizeof", (long long)sizeof(t))
#define OFF(t, f) num(#f, (long long)offsetof(t, f))
#define CONST(c) num(#c, (long long)(c))

static void *ring_pages(void)
{
    void *p = aligned_alloc(PAGE, PAGE * MAX_PAGES);
    if (!p) {
        perror("aligned_alloc");
        exit(2);
    }
    memset(p, 0, PAGE * MAX_PAGES);
    return p;
}

#define RING_SIZES(name)                                              \
    do {                                                              \
        name##_sring_t *s = ring_pages();                             \
        name##_front_ring_t f;                                        \
        obj_begin(#name);                                             \
        for (int order = 0; order <= 4; order++) {                    \
            char key[16];                                             \
            SHARED_RING_INIT(s);                                      \
            FRONT_RING_INIT(&f, s, PAGE << order);                    \
            snprintf(key, sizeof(key), "order%d", order);             \
            num(key, (long long)RING_SIZE(&f));                       \
        }                                                             \
        num("const_1page", (long long)__CONST_RING_SIZE(name, PAGE)); \
        num("offset_ring", (long long)offsetof(name##_sring_t, ring)); \
        num("sizeof_entry", (long long)sizeof(s->ring[0]));           \
        num("req_event_after_init", (long long)s->req_event);         \
        num("rsp_event_after_init", (long long)s->rsp_event);         \
        obj_end();                                                    \
        free(s);                                                      \
    } while (0)

static void layout(void)
{
    printf("{");
    first_field = 1;

    obj_begin("sring");
    OFF(struct blkif_sring, req_prod);
    OFF(struct blkif_sring, req_event);
    OFF(struct blkif_sring, rsp_prod);
    OFF(struct blkif_sring, rsp_event);
    OFF(struct blkif_sring, pvt);
    OFF(struct blkif_sring, __pad);
    OFF(struct blkif_sring, ring);
    num("sizeof_pvt", (long long)sizeof(((struct blkif_sring *)0)->pvt));
    num("sizeof_pad", (long long)sizeof(((struct blkif_sring *)0)->__pad));
    obj_end();

    obj_begin("blkif_request");
    SZ(struct blkif_request);
    OFF(struct blkif_request, operation);
    OFF(struct blkif_request, nr_segments);
    OFF(struct blkif_request, handle);
    OFF(struct blkif_request, id);
    OFF(struct blkif_request, sector_number);
    OFF(struct blkif_request, seg);
    obj_end();
    obj_begin("blkif_request_segment");
    SZ(struct blkif_request_segment);
    OFF(struct blkif_request_segment, gref);
    OFF(struct blkif_request_segment, first_sect);
    OFF(struct blkif_request_segment, last_sect);
    obj_end();
    obj_begin("blkif_request_discard");
    SZ(struct blkif_request_discard);
    OFF(struct blkif_request_discard, operation);
    OFF(struct blkif_request_discard, flag);
    OFF(struct blkif_request_discard, handle);
    OFF(struct blkif_request_discard, id);
    OFF(struct blkif_request_discard, sector_number);
    OFF(struct blkif_request_discard, nr_sectors);
    obj_end();
    obj_begin("blkif_request_indirect");
    SZ(struct blkif_request_indirect);
    OFF(struct blkif_request_indirect, operation);
    OFF(struct blkif_request_indirect, indirect_op);
    OFF(struct blkif_request_indirect, nr_segments);
    OFF(struct blkif_request_indirect, id);
    OFF(struct blkif_request_indirect, sector_number);
    OFF(struct blkif_request_indirect, handle);
    OFF(struct blkif_request_indirect, indirect_grefs);
    obj_end();
    obj_begin("blkif_response");
    SZ(struct blkif_response);
    OFF(struct blkif_response, id);
    OFF(struct blkif_response, operation);
    OFF(struct blkif_response, status);
    obj_end();

    obj_begin("netif_tx_request");
    SZ(struct netif_tx_request);
    OFF(struct netif_tx_request, gref);
    OFF(struct netif_tx_request, offset);
    OFF(struct netif_tx_request, flags);
    OFF(struct netif_tx_request, id);
    OFF(struct netif_tx_request, size);
    obj_end();
    obj_begin("netif_tx_response");
    SZ(struct netif_tx_response);
    OFF(struct netif_tx_response, id);
    OFF(struct netif_tx_response, status);
    obj_end();
    obj_begin("netif_rx_request");
    SZ(struct netif_rx_request);
    OFF(struct netif_rx_request, id);
    OFF(struct netif_rx_request, pad);
    OFF(struct netif_rx_request, gref);
    obj_end();
    obj_begin("netif_rx_response");
    SZ(struct netif_rx_response);
    OFF(struct netif_rx_response, id);
    OFF(struct netif_rx_response, offset);
    OFF(struct netif_rx_response, flags);
    OFF(struct netif_rx_response, status);
    obj_end();
    obj_begin("netif_extra_info");
    SZ(struct netif_extra_info);
    OFF(struct netif_extra_info, type);
    OFF(struct netif_extra_info, flags);
    OFF(struct netif_extra_info, u);
    num("gso_size", (long long)offsetof(struct netif_extra_info, u.gso.size));
    num("gso_type", (long long)offsetof(struct netif_extra_info, u.gso.type));
    num("gso_pad", (long long)offsetof(struct netif_extra_info, u.gso.pad));
    num("gso_features", (long long)offsetof(struct netif_extra_info, u.gso.features));
    num("mcast_addr", (long long)offsetof(struct netif_extra_info, u.mcast.addr));
    num("hash_type", (long long)offsetof(struct netif_extra_info, u.hash.type));
    num("hash_algorithm", (long long)offsetof(struct netif_extra_info, u.hash.algorithm));
    num("hash_value", (long long)offsetof(struct netif_extra_info, u.hash.value));
    obj_end();
    obj_begin("xen_netif_ctrl_request");
    SZ(struct xen_netif_ctrl_request);
    OFF(struct xen_netif_ctrl_request, id);
    OFF(struct xen_netif_ctrl_request, type);
    OFF(struct xen_netif_ctrl_request, data);
    obj_end();
    obj_begin("xen_netif_ctrl_response");
    SZ(struct xen_netif_ctrl_response);
    OFF(struct xen_netif_ctrl_response, id);
    OFF(struct xen_netif_ctrl_response, type);
    OFF(struct xen_netif_ctrl_response, status);
    OFF(struct xen_netif_ctrl_response, data);
    obj_end();

    obj_begin("ring_size");
    RING_SIZES(blkif);
    RING_SIZES(netif_tx);
    RING_SIZES(netif_rx);
    RING_SIZES(xen_netif_ctrl);
    obj_end();

    obj_begin("constants");
    CONST(BLKIF_OP_READ);
    CONST(BLKIF_OP_WRITE);
    CONST(BLKIF_OP_WRITE_BARRIER);
    CONST(BLKIF_OP_FLUSH_DISKCACHE);
    CONST(BLKIF_OP_RESERVED_1);
    CONST(BLKIF_OP_DISCARD);
    CONST(BLKIF_OP_INDIRECT);
    CONST(BLKIF_MAX_SEGMENTS_PER_REQUEST);
    CONST(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST);
    CONST(BLKIF_DISCARD_SECURE);
    CONST(BLKIF_RSP_EOPNOTSUPP);
    CONST(BLKIF_RSP_ERROR);
    CONST(BLKIF_RSP_OKAY);
    CONST(VDISK_CDROM);
    CONST(VDISK_REMOVABLE);
    CONST(VDISK_READONLY);
    CONST(XEN_NETIF_NR_SLOTS_MIN);
    CONST(XEN_NETIF_MAX_TX_SIZE);
    CONST(NETTXF_csum_blank);
    CONST(NETTXF_data_validated);
    CONST(NETTXF_more_data);
    CONST(NETTXF_extra_info);
    CONST(NETRXF_data_validated);
    CONST(NETRXF_csum_blank);
    CONST(NETRXF_more_data);
    CONST(NETRXF_extra_info);
    CONST(NETRXF_gso_prefix);
    CONST(XEN_NETIF_EXTRA_TYPE_NONE);
    CONST(XEN_NETIF_EXTRA_TYPE_GSO);
    CONST(XEN_NETIF_EXTRA_TYPE_MCAST_ADD);
    CONST(XEN_NETIF_EXTRA_TYPE_MCAST_DEL);
    CONST(XEN_NETIF_EXTRA_TYPE_HASH);
    CONST(XEN_NETIF_EXTRA_TYPE_MAX);
    CONST(XEN_NETIF_EXTRA_FLAG_MORE);
    CONST(XEN_NETIF_GSO_TYPE_NONE);
    CONST(XEN_NETIF_GSO_TYPE_TCPV4);
    CONST(XEN_NETIF_GSO_TYPE_TCPV6);
    CONST(NETIF_RSP_DROPPED);
    CONST(NETIF_RSP_ERROR);
    CONST(NETIF_RSP_OKAY);
    CONST(NETIF_RSP_NULL);
    CONST(XEN_NETIF_CTRL_TYPE_INVALID);
    CONST(XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS);
    CONST(XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS);
    CONST(XEN_NETIF_CTRL_TYPE_SET_HASH_KEY);
    CONST(XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE);
    CONST(XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE);
    CONST(XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING);
    CONST(XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM);
    CONST(XEN_NETIF_CTRL_TYPE_GET_GREF_MAPPING_SIZE);
    CONST(XEN_NETIF_CTRL_TYPE_ADD_GREF_MAPPING);
    CONST(XEN_NETIF_CTRL_TYPE_DEL_GREF_MAPPING);
    CONST(XEN_NETIF_CTRL_STATUS_SUCCESS);
    CONST(XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED);
    CONST(XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER);
    CONST(XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW);
    CONST(XEN_NETIF_CTRL_HASH_ALGORITHM_NONE);
    CONST(XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ);
    CONST(XEN_NETIF_CTRL_HASH_TYPE_IPV4);
    CONST(XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
    CONST(XEN_NETIF_CTRL_HASH_TYPE_IPV6);
    CONST(XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);
    obj_end();

    /* Sample entries, zeroed then filled field by field (values mirrored in oracle.test.ts). */
    obj_begin("samples");
    {
        struct blkif_request r;
        memset(&r, 0, sizeof(r));
        r.operation = BLKIF_OP_WRITE;
        r.nr_segments = 3;
        r.handle = 0x1234;
        r.id = 0x0123456789abcdefULL;
        r.sector_number = 0x123456789abcULL;
        r.seg[0].gref = 0x11223344; r.seg[0].first_sect = 1; r.seg[0].last_sect = 7;
        r.seg[1].gref = 0xaabbccdd; r.seg[1].first_sect = 0; r.seg[1].last_sect = 7;
        r.seg[2].gref = 5;          r.seg[2].first_sect = 2; r.seg[2].last_sect = 3;
        hex("blkif_direct", &r, sizeof(r));
    }
    {
        union { struct blkif_request slot; struct blkif_request_discard d; } u;
        memset(&u, 0, sizeof(u));
        u.d.operation = BLKIF_OP_DISCARD;
        u.d.flag = BLKIF_DISCARD_SECURE;
        u.d.handle = 0x0203;
        u.d.id = 0xfedcba9876543210ULL;
        u.d.sector_number = 12345678901ULL;
        u.d.nr_sectors = 2048;
        hex("blkif_discard", &u, sizeof(u));
    }
    {
        union { struct blkif_request slot; struct blkif_request_indirect i; } u;
        memset(&u, 0, sizeof(u));
        u.i.operation = BLKIF_OP_INDIRECT;
        u.i.indirect_op = BLKIF_OP_WRITE;
        u.i.nr_segments = 1000;
        u.i.id = 42;
        u.i.sector_number = 999;
        u.i.handle = 51712;
        for (int k = 0; k < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; k++)
            u.i.indirect_grefs[k] = 100 + k;
        hex("blkif_indirect", &u, sizeof(u));
    }
    {
        struct blkif_response r;
        memset(&r, 0, sizeof(r));
        r.id = 0xdeadbeefcafef00dULL;
        r.operation = BLKIF_OP_WRITE;
        r.status = BLKIF_RSP_EOPNOTSUPP;
        hex("blkif_response", &r, sizeof(r));
    }
    {
        struct netif_tx_request r;
        memset(&r, 0, sizeof(r));
        r.gref = 0x01020304; r.offset = 0x0506; r.flags = NETTXF_more_data | NETTXF_extra_info;
        r.id = 0x0708; r.size = 1514;
        hex("netif_tx_request", &r, sizeof(r));
    }
    {
        struct netif_tx_response r;
        memset(&r, 0, sizeof(r));
        r.id = 0x0102; r.status = NETIF_RSP_ERROR;
        hex("netif_tx_response", &r, sizeof(r));
    }
    {
        struct netif_rx_request r;
        memset(&r, 0, sizeof(r));
        r.id = 0x0304; r.gref = 0x05060708;
        hex("netif_rx_request", &r, sizeof(r));
    }
    {
        struct netif_rx_response r;
        memset(&r, 0, sizeof(r));
        r.id = 9; r.offset = 0x0a0b; r.flags = NETRXF_more_data | NETRXF_csum_blank; r.status = 1500;
        hex("netif_rx_response", &r, sizeof(r));
    }
    {
        struct netif_extra_info e;
        memset(&e, 0, sizeof(e));
        e.type = XEN_NETIF_EXTRA_TYPE_GSO; e.flags = XEN_NETIF_EXTRA_FLAG_MORE;
        e.u.gso.size = 1448; e.u.gso.type = XEN_NETIF_GSO_TYPE_TCPV4; e.u.gso.features = 0;
        hex("extra_gso", &e, sizeof(e));
        memset(&e, 0, sizeof(e));
        e.type = XEN_NETIF_EXTRA_TYPE_MCAST_ADD;
        e.u.mcast.addr[0] = 0x01; e.u.mcast.addr[1] = 0x00; e.u.mcast.addr[2] = 0x5e;
        e.u.mcast.addr[3] = 0x00; e.u.mcast.addr[4] = 0x00; e.u.mcast.addr[5] = 0xfb;
        hex("extra_mcast", &e, sizeof(e));
        memset(&e, 0, sizeof(e));
        e.type = XEN_NETIF_EXTRA_TYPE_HASH;
        e.u.hash.type = _XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP;
        e.u.hash.algorithm = XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ;
        e.u.hash.value[0] = 0x78; e.u.hash.value[1] = 0x56; e.u.hash.value[2] = 0x34; e.u.hash.value[3] = 0x12;
        hex("extra_hash", &e, sizeof(e));
    }
    {
        struct xen_netif_ctrl_request r;
        memset(&r, 0, sizeof(r));
        r.id = 7; r.type = XEN_NETIF_CTRL_TYPE_SET_HASH_KEY; r.data[0] = 1; r.data[1] = 2; r.data[2] = 0xffffffffU;
        hex("ctrl_request", &r, sizeof(r));
    }
    {
        struct xen_netif_ctrl_response r;
        memset(&r, 0, sizeof(r));
        r.id = 7; r.type = XEN_NETIF_CTRL_TYPE_SET_HASH_KEY; r.status = XEN_NETIF_CTRL_STATUS_SUCCESS; r.data = 40;
        hex("ctrl_response", &r, sizeof(r));
    }
    obj_end();

    printf("}\n");
}

/* ---- trace mode ---- */

/* The id of the k-th request: spread over all bits of the id field. */
static uint64_t blk_id(uint64_t k) { return k * 0x9E3779B97F4A7C15ULL; }
static uint16_t net_id(uint64_t k) { return (uint16_t)(k * 40503U); }

#define QMAX 65536
static uint64_t answer_q[QMAX];
static unsigned q_head, q_tail;

/*
 * One trace function per ring type: the same code for each, since every
 * request and response struct has an `id` field.
 */
#define DEFINE_TRACE(name, idfn, fmt, cast)                                                  \
static void trace_##name(unsigned order, RING_IDX start)                                     \
{                                                                                            \
    size_t bytes = (size_t)PAGE << order;                                                    \
    name##_sring_t *s = ring_pages();                                                        \
    name##_front_ring_t f;                                                                   \
    name##_back_ring_t b;                                                                    \
    uint64_t next = 0;                                                                       \
    char op[16];                                                                             \
    unsigned n;                                                                              \
    SHARED_RING_INIT(s);                                                                     \
    if (start == 0) {                                                                        \
        FRONT_RING_INIT(&f, s, bytes);                                                       \
        BACK_RING_INIT(&b, s, bytes);                                                        \
    } else {                                                                                 \
        s->req_prod = s->rsp_prod = start;                                                   \
        s->req_event = s->rsp_event = start + 1;                                             \
        FRONT_RING_ATTACH(&f, s, start, bytes);                                              \
        BACK_RING_ATTACH(&b, s, start, bytes);                                               \
    }                                                                                        \
    while (scanf("%15s", op) == 1) {                                                         \
        if (!strcmp(op, "fput")) {                                                           \
            if (scanf("%u", &n) != 1) exit(3);                                               \
            unsigned k = 0;                                                                  \
            while (k < n && RING_FREE_REQUESTS(&f) > 0) {                                    \
                name##_request_t *req = RING_GET_REQUEST(&f, f.req_prod_pvt);                \
                memset(req, 0, sizeof(*req));                                                \
                req->id = idfn(next++);                                                      \
                f.req_prod_pvt++;                                                            \
                k++;                                                                         \
            }                                                                                \
            printf("fput k=%u req_prod_pvt=%u\n", k, f.req_prod_pvt);                        \
        } else if (!strcmp(op, "fpush")) {                                                   \
            int notify;                                                                      \
            RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&f, notify);                                 \
            printf("fpush req_prod=%u notify=%d\n", s->req_prod, notify);                    \
        } else if (!strcmp(op, "bcons")) {                                                   \
            if (scanf("%u", &n) != 1) exit(3);                                               \
            unsigned k = 0;                                                                  \
            printf("bcons ids=");                                                            \
            while (k < n && RING_HAS_UNCONSUMED_REQUESTS(&b)) {                              \
                name##_request_t req;                                                        \
                RING_COPY_REQUEST(&b, b.req_cons, &req);                                     \
                b.req_cons++;                                                                \
                answer_q[q_tail++ % QMAX] = req.id;                                          \
                printf(k ? "," fmt : fmt, (cast)req.id);                                     \
                k++;                                                                         \
            }                                                                                \
            printf(" k=%u req_cons=%u\n", k, b.req_cons);                                    \
        } else if (!strcmp(op, "bfinal")) {                                                  \
            int work;                                                                        \
            RING_FINAL_CHECK_FOR_REQUESTS(&b, work);                                         \
            printf("bfinal work=%d req_event=%u\n", work ? 1 : 0, s->req_event);             \
        } else if (!strcmp(op, "bput")) {                                                    \
            if (scanf("%u", &n) != 1) exit(3);                                               \
            unsigned k = 0;                                                                  \
            while (k < n && b.rsp_prod_pvt != b.req_cons) {                                  \
                name##_response_t *rsp = RING_GET_RESPONSE(&b, b.rsp_prod_pvt);              \
                memset(rsp, 0, sizeof(*rsp));                                                \
                rsp->id = answer_q[q_head++ % QMAX];                                         \
                b.rsp_prod_pvt++;                                                            \
                k++;                                                                         \
            }                                                                                \
            printf("bput k=%u rsp_prod_pvt=%u\n", k, b.rsp_prod_pvt);                        \
        } else if (!strcmp(op, "bpush")) {                                                   \
            int notify;                                                                      \
            RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&b, notify);                                \
            printf("bpush rsp_prod=%u notify=%d\n", s->rsp_prod, notify);                    \
        } else if (!strcmp(op, "fcons")) {                                                   \
            if (scanf("%u", &n) != 1) exit(3);                                               \
            unsigned k = 0;                                                                  \
            printf("fcons ids=");                                                            \
            while (k < n && RING_HAS_UNCONSUMED_RESPONSES(&f)) {                             \
                name##_response_t rsp;                                                       \
                RING_COPY_RESPONSE(&f, f.rsp_cons, &rsp);                                    \
                f.rsp_cons++;                                                                \
                printf(k ? "," fmt : fmt, (cast)rsp.id);                                     \
                k++;                                                                         \
            }                                                                                \
            printf(" k=%u rsp_cons=%u\n", k, f.rsp_cons);                                    \
        } else if (!strcmp(op, "ffinal")) {                                                  \
            int work;                                                                        \
            RING_FINAL_CHECK_FOR_RESPONSES(&f, work);                                        \
            printf("ffinal work=%d rsp_event=%u\n", work ? 1 : 0, s->rsp_event);             \
        } else if (!strcmp(op, "free")) {                                                    \
            printf("free n=%u\n", (unsigned)RING_FREE_REQUESTS(&f));                         \
        } else if (!strcmp(op, "bunc")) {                                                    \
            printf("bunc n=%u\n", (unsigned)RING_HAS_UNCONSUMED_REQUESTS(&b));               \
        } else if (!strcmp(op, "func")) {                                                    \
            printf("func n=%u\n", (unsigned)RING_HAS_UNCONSUMED_RESPONSES(&f));              \
        } else {                                                                             \
            fprintf(stderr, "unknown op %s\n", op);                                          \
            exit(3);                                                                         \
        }                                                                                    \
    }                                                                                        \
    printf("dump ");                                                                         \
    for (size_t i = 0; i < bytes; i++)                                                       \
        printf("%02x", ((unsigned char *)s)[i]);                                             \
    printf("\n");                                                                            \
    free(s);                                                                                 \
}

DEFINE_TRACE(blkif, blk_id, "%llu", unsigned long long)
DEFINE_TRACE(netif_tx, net_id, "%u", unsigned)
DEFINE_TRACE(netif_rx, net_id, "%u", unsigned)

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "layout")) {
        layout();
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "trace")) {
        unsigned order = (unsigned)strtoul(argv[3], NULL, 0);
        RING_IDX start = (RING_IDX)strtoul(argv[4], NULL, 0);
        if (order > 4) {
            fprintf(stderr, "order must be 0..4\n");
            return 2;
        }
        if (!strcmp(argv[2], "blkif")) trace_blkif(order, start);
        else if (!strcmp(argv[2], "tx")) trace_netif_tx(order, start);
        else if (!strcmp(argv[2], "rx")) trace_netif_rx(order, start);
        else {
            fprintf(stderr, "unknown ring %s\n", argv[2]);
            return 2;
        }
        return 0;
    }
    fprintf(stderr, "usage: %s layout | trace <blkif|tx|rx> <order 0..4> <start>\n", argv[0]);
    return 2;
}
