//! Arbitrary bytes through every CBDMA decoder in `passthru_core::ioat`: the 64-byte copy / fill
//! / NULL descriptor, the XOR and P+Q layouts, and every register value type. Nothing may panic
//! and byte-level decodes must round-trip.
#![no_main]

use std::fmt::Write;

use libfuzzer_sys::fuzz_target;
use passthru_core::ioat::*;
use passthru_fuzz::Bytes;
use zerocopy::{FromBytes, IntoBytes};

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes::new(data);
    let mut s = String::new();

    let raw: [u8; 64] = b.array();
    let d = Descriptor::from_bytes(&raw);
    assert_eq!(d.to_bytes(), raw);
    let c = d.control();
    let _ = (
        c.flags(),
        c.op_bits(),
        c.reserved(),
        c.src_cnt_field(),
        c.p_disable(),
        c.q_disable(),
        c.wb_err_status_en(),
        c.prl_en(),
        c.pq_update_coef(),
    );
    match c.op() {
        Ok(op) => assert_eq!(u8::from(op), c.op_bits()),
        Err(v) => assert_eq!(v, c.op_bits()),
    }
    // Rebuilding with builders keeps the fields the builder owns.
    let copy = Descriptor::copy(d.src_addr, d.dst_addr, d.size).with_next(d.next);
    assert_eq!(
        copy.to_bytes()[0..32],
        {
            let mut e = raw;
            e[4..8].copy_from_slice(&[0; 4]);
            e
        }[0..32]
    );
    let _ = Descriptor::fill(d.src_addr, d.dst_addr, d.size).with_flags(c.flags());

    let x = XorDescriptor::read_from_bytes(&raw[..]).ok();
    let _ = x.map(|x| (x.src5, DescControl(x.ctl).src_cnt_field()));
    let xe = XorExtDescriptor::read_from_bytes(&raw[..]).ok();
    let _ = xe.map(|x| x.next);
    let pq = PqDescriptor::read_from_bytes(&raw[..]).ok();
    if let Some(pq) = pq {
        assert_eq!(pq.as_bytes(), &raw[..]);
    }
    let pqe = PqExtDescriptor::read_from_bytes(&raw[..]).ok();
    let _ = pqe.map(|p| p.src8);
    let mut raw128 = [0u8; 128];
    raw128[..64].copy_from_slice(&raw);
    raw128[64..].copy_from_slice(&b.array::<64>());
    if let Ok(sed) = PqSuperExtDescriptor::read_from_bytes(&raw128[..]) {
        assert_eq!(sed.as_bytes(), &raw128[..]);
    }

    let v = b.u64();
    let sts = ChanSts(v);
    let _ = (
        sts.state_bits(),
        sts.state(),
        sts.unaffiliated_err(),
        sts.soft_err(),
        sts.completed_address(),
    );
    let _ = write!(s, "{sts}");
    let err = ChanErr::from_bits_retain(v as u32);
    assert_eq!(err.bits(), v as u32);
    let _ = write!(s, "{}", ChanErrDisplay(v as u32));
    for bit in 0..40 {
        let _ = ChanErr::describe_bit(bit);
    }
    let ctl = ChanCtrl::from_bits_retain(v as u16);
    let _ = (ctl.priority(), ctl.with_priority(raw[0]));
    let _ = ChanCmd::from_bits_retain(raw[1]);
    let _ = DmaComp::from_bits_retain(v as u16);
    let _ = ChanCnt(raw[2]).count();
    let xc = XferCap(raw[3]);
    let _ = (xc.log2(), xc.max_bytes(), xc.spdk_invalid());
    let _ = GenCtrl::from_bits_retain(raw[4]);
    let _ = IntrCtrl::from_bits_retain(raw[5]);
    let a = AttnStatus(v as u32);
    let _ = (a.channel(raw[6]), a.with_channel(raw[7]));
    let cb = CbVer(raw[8]);
    let _ = (cb.major(), cb.minor(), cb.is_v3());
    let _ = write!(s, "{cb}");
    let id = IntrDelay(v as u16);
    let _ = (
        id.delay_us(),
        id.coalesce_supported(),
        id.with_delay_us(raw[9].into()),
    );
    let _ = CsStatus::from_bits_retain(v as u16);
    let _ = DmaCapability::from_bits_retain(v as u32);
    let dca = DcaCtrl(v as u32);
    let _ = (dca.target_apic_id(), dca.completion_dca());
    let drs = DrsCtl(v as u16);
    let _ = (
        drs.size_code(),
        drs.ring_bytes(),
        drs.enabled(),
        drs.auto_wrap(),
    );
    let _ = channel_base(raw[10]);
    if let Some(p) = Platform::from_device_id(v as u16) {
        let _ = p.is_v3();
    }
});
