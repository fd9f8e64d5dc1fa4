/**
 * Golden ring ABI numbers (XEN-FACTS §0, measured with gcc on the Xen 4.17
 * public headers, x86_64). These are pinned by hand so a change to a layout
 * table fails here even where gcc is absent; test/oracle re-derives them
 * from the real headers.
 */
import { expect } from 'chai';
import {
  BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
  BLKIF_MAX_SEGMENTS_PER_REQUEST,
  BLKIF_OP_DISCARD,
  BLKIF_OP_FLUSH_DISKCACHE,
  BLKIF_OP_INDIRECT,
  BLKIF_OP_READ,
  BLKIF_OP_RESERVED_1,
  BLKIF_OP_WRITE,
  BLKIF_OP_WRITE_BARRIER,
  BLKIF_REQUEST,
  BLKIF_REQUEST_DISCARD,
  BLKIF_REQUEST_INDIRECT,
  BLKIF_REQUEST_SEGMENT,
  BLKIF_RESPONSE,
  BLKIF_RING_ENTRY_SIZE,
  BLKIF_RING_SIZE_1PAGE,
  BLKIF_RSP_EOPNOTSUPP,
  BLKIF_RSP_ERROR,
  BLKIF_RSP_OKAY,
  blkifSegsPerIndirectFrame,
} from '../../shared/abi/blkif.ts';
import {
  NETIF_EXTRA_INFO,
  NETIF_RX_REQUEST,
  NETIF_RX_RESPONSE,
  NETIF_TX_REQUEST,
  NETIF_TX_RESPONSE,
  NETIF_TX_RING_ENTRY_SIZE,
  NET_RX_RING_SIZE_1PAGE,
  NET_TX_RING_SIZE_1PAGE,
  XEN_NETIF_CTRL_REQUEST,
  XEN_NETIF_CTRL_RESPONSE,
  XEN_NETIF_CTRL_RING_SIZE_1PAGE,
  XEN_NETIF_NR_SLOTS_MIN,
  XEN_NETIF_MAX_TX_SIZE,
} from '../../shared/abi/netif.ts';
import { SRING, XENBUS_MAX_RING_GRANTS, XENBUS_MAX_RING_GRANT_ORDER, rd32, ringSize } from '../../shared/abi/ring.ts';

describe('ring ABI golden layouts (x86_64)', () => {
  it('lays out the sring header in 64 bytes: four indices, pvt, 44 bytes of pad', () => {
    expect([SRING.req_prod, SRING.req_event, SRING.rsp_prod, SRING.rsp_event]).to.deep.equal([0, 4, 8, 12]);
    expect([SRING.pvt, SRING.PVT_SIZE, SRING.__pad, SRING.PAD_SIZE]).to.deep.equal([16, 4, 20, 44]);
    expect(SRING.ring).to.equal(64);
    expect(SRING.SIZE).to.equal(64);
  });

  it('rounds entry counts down to a power of two, as __RD32 does', () => {
    expect([0, 1, 2, 3, 36, 63, 64, 65, 336, 504, 0xffff_ffff].map(rd32)).to.deep.equal([0, 1, 2, 2, 32, 32, 64, 64, 256, 256, 0x8000_0000]);
    expect(() => rd32(-1)).to.throw(RangeError);
    expect(() => ringSize(63, 8)).to.throw(RangeError);
  });

  it('pins blkif_request at 112 bytes and 32 entries per 4 KiB page (36 fit)', () => {
    expect(BLKIF_REQUEST).to.deep.equal({ operation: 0, nr_segments: 1, handle: 2, id: 8, sector_number: 16, seg: 24, SIZE: 112 });
    expect(BLKIF_REQUEST.seg + BLKIF_MAX_SEGMENTS_PER_REQUEST * BLKIF_REQUEST_SEGMENT.SIZE).to.equal(BLKIF_REQUEST.SIZE);
    expect(BLKIF_RING_ENTRY_SIZE).to.equal(112);
    expect(Math.floor((4096 - 64) / 112)).to.equal(36);
    expect(BLKIF_RING_SIZE_1PAGE).to.equal(32);
  });

  it('pins the blkif segment (8), discard (32), indirect (64) and response (16) layouts', () => {
    expect(BLKIF_REQUEST_SEGMENT).to.deep.equal({ gref: 0, first_sect: 4, last_sect: 5, SIZE: 8 });
    expect(BLKIF_REQUEST_DISCARD).to.deep.equal({ operation: 0, flag: 1, handle: 2, id: 8, sector_number: 16, nr_sectors: 24, SIZE: 32 });
    expect(BLKIF_REQUEST_INDIRECT).to.deep.equal({ operation: 0, indirect_op: 1, nr_segments: 2, id: 8, sector_number: 16, handle: 24, indirect_grefs: 28, SIZE: 64 });
    expect(BLKIF_RESPONSE).to.deep.equal({ id: 0, operation: 8, status: 10, SIZE: 16 });
  });

  it('pins the blkif operations, statuses and limits', () => {
    expect([BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_RESERVED_1, BLKIF_OP_DISCARD, BLKIF_OP_INDIRECT]).to.deep.equal([0, 1, 2, 3, 4, 5, 6]);
    expect([BLKIF_RSP_OKAY, BLKIF_RSP_ERROR, BLKIF_RSP_EOPNOTSUPP]).to.deep.equal([0, -1, -2]);
    expect(BLKIF_MAX_SEGMENTS_PER_REQUEST).to.equal(11);
    expect(BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST).to.equal(8);
    expect(blkifSegsPerIndirectFrame()).to.equal(512);
  });

  it('pins netif tx 12/4 (12-byte slot), rx 8/8, extra info 8, ctrl 16/12, and 256 tx/rx entries per page', () => {
    expect(NETIF_TX_REQUEST).to.deep.equal({ gref: 0, offset: 4, flags: 6, id: 8, size: 10, SIZE: 12 });
    expect(NETIF_TX_RESPONSE).to.deep.equal({ id: 0, status: 2, SIZE: 4 });
    expect(NETIF_TX_RING_ENTRY_SIZE).to.equal(12);
    expect(NETIF_RX_REQUEST).to.deep.equal({ id: 0, pad: 2, gref: 4, SIZE: 8 });
    expect(NETIF_RX_RESPONSE).to.deep.equal({ id: 0, offset: 2, flags: 4, status: 6, SIZE: 8 });
    expect([NETIF_EXTRA_INFO.type, NETIF_EXTRA_INFO.flags, NETIF_EXTRA_INFO.u, NETIF_EXTRA_INFO.SIZE]).to.deep.equal([0, 1, 2, 8]);
    expect(XEN_NETIF_CTRL_REQUEST.SIZE).to.equal(16);
    expect(XEN_NETIF_CTRL_RESPONSE.SIZE).to.equal(12);
    expect([NET_TX_RING_SIZE_1PAGE, NET_RX_RING_SIZE_1PAGE, XEN_NETIF_CTRL_RING_SIZE_1PAGE]).to.deep.equal([256, 256, 128]);
    expect(XEN_NETIF_NR_SLOTS_MIN).to.equal(18);
    expect(XEN_NETIF_MAX_TX_SIZE).to.equal(65535);
  });

  it('allows rings of up to ring-page-order 4 (16 pages): 512 blkif or 4096 netif entries', () => {
    expect(XENBUS_MAX_RING_GRANT_ORDER).to.equal(4);
    expect(XENBUS_MAX_RING_GRANTS).to.equal(16);
    expect(ringSize(16 * 4096, 112)).to.equal(512);
    expect(ringSize(16 * 4096, 12)).to.equal(4096);
    expect(ringSize(16 * 4096, 8)).to.equal(4096);
  });
});
