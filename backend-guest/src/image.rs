//! The embedded guest image: ELF loading, the image header and the guest-main table.

use std::sync::OnceLock;

use passthru_guest_rt::abi::{GuestMainEntry, ImageHeader, IMAGE_GPA, IMAGE_MAGIC, IMAGE_MAX};
use zerocopy::{FromBytes, Immutable, KnownLayout};

use crate::error::{Result, VmError};

/// The guest image ELF built by `build.rs`.
pub static GUEST_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/passthru-guest-image.elf"));

#[derive(FromBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Elf64Ehdr {
    ident: [u8; 16],
    typ: u16,
    machine: u16,
    version: u32,
    entry: u64,
    phoff: u64,
    shoff: u64,
    flags: u32,
    ehsize: u16,
    phentsize: u16,
    phnum: u16,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
}

#[derive(FromBytes, Immutable, KnownLayout)]
#[repr(C)]
struct Elf64Phdr {
    typ: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

const ET_EXEC: u16 = 2;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;

/// A loaded image: its bytes as they lie in guest memory from [`IMAGE_GPA`], its header and
/// its mains.
#[derive(Debug)]
pub struct Image {
    /// The image from `IMAGE_GPA` (bss included, zero-filled).
    pub bytes: Vec<u8>,
    /// The header (at `IMAGE_GPA`).
    pub header: ImageHeader,
    /// `(name, entry GPA)` of every registered guest main.
    pub mains: Vec<(String, u64)>,
}

impl Image {
    /// Parses an ELF image.
    pub fn parse(elf: &[u8]) -> Result<Self> {
        let bad = |m: &str| VmError::Image(m.to_string());
        let (eh, _) =
            Elf64Ehdr::read_from_prefix(elf).map_err(|_| bad("shorter than an ELF header"))?;
        if &eh.ident[..4] != b"\x7fELF" || eh.ident[4] != 2 || eh.ident[5] != 1 {
            return Err(bad("not a little-endian ELF64 file"));
        }
        if eh.typ != ET_EXEC || eh.machine != EM_X86_64 {
            return Err(bad("not an x86_64 executable (linked as PIE?)"));
        }
        let mut bytes = Vec::new();
        for i in 0..eh.phnum as u64 {
            let off = eh.phoff + i * eh.phentsize as u64;
            let ph = elf
                .get(off as usize..)
                .and_then(|s| Elf64Phdr::read_from_prefix(s).ok())
                .ok_or_else(|| bad("program header outside the file"))?
                .0;
            if ph.typ != PT_LOAD || ph.memsz == 0 {
                continue;
            }
            if ph.vaddr < IMAGE_GPA || ph.vaddr + ph.memsz > IMAGE_GPA + IMAGE_MAX {
                return Err(VmError::Image(format!(
                    "segment at {:#x}+{:#x} outside the image window {IMAGE_GPA:#x}+{IMAGE_MAX:#x}",
                    ph.vaddr, ph.memsz
                )));
            }
            let start = (ph.vaddr - IMAGE_GPA) as usize;
            let end = start + ph.memsz as usize;
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            let src = elf
                .get(ph.offset as usize..(ph.offset + ph.filesz) as usize)
                .ok_or_else(|| bad("segment data outside the file"))?;
            bytes[start..start + src.len()].copy_from_slice(src);
        }
        let (header, _) =
            ImageHeader::read_from_prefix(&bytes).map_err(|_| bad("no image header"))?;
        if header.magic != IMAGE_MAGIC {
            return Err(bad(
                "image header magic missing (linker script not applied?)",
            ));
        }
        let at = |gpa: u64, len: u64| -> Result<&[u8]> {
            gpa.checked_sub(IMAGE_GPA)
                .and_then(|o| bytes.get(o as usize..(o + len) as usize))
                .ok_or_else(|| VmError::Image(format!("address {gpa:#x}+{len} outside the image")))
        };
        let n = (header.mains_end - header.mains_start) / size_of::<GuestMainEntry>() as u64;
        let table = at(header.mains_start, n * size_of::<GuestMainEntry>() as u64)?;
        let mut mains = Vec::new();
        for chunk in table.chunks_exact(size_of::<GuestMainEntry>()) {
            let e = GuestMainEntry::read_from_bytes(chunk).map_err(|_| bad("guest-main entry"))?;
            let name = std::str::from_utf8(at(e.name, e.name_len)?)
                .map_err(|_| bad("guest-main name is not UTF-8"))?;
            mains.push((name.to_string(), e.func));
        }
        Ok(Self {
            bytes,
            header,
            mains,
        })
    }

    /// The embedded image, parsed once.
    pub fn embedded() -> Result<&'static Image> {
        static IMAGE: OnceLock<std::result::Result<Image, String>> = OnceLock::new();
        IMAGE
            .get_or_init(|| Image::parse(GUEST_ELF).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| VmError::Image(e.clone()))
    }

    /// Entry GPA of the guest main `name`.
    pub fn main(&self, name: &str) -> Result<u64> {
        self.mains
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| *f)
            .ok_or_else(|| VmError::NoSuchMain {
                name: name.to_string(),
                available: self
                    .mains
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_image_has_header_stubs_and_mains() {
        let img = Image::embedded().unwrap();
        let h = img.header;
        assert_eq!(h.magic, IMAGE_MAGIC);
        for a in [h.exception_stubs, h.irq_stubs, h.nmi_stub, h.main_return] {
            assert!(
                (IMAGE_GPA..IMAGE_GPA + img.bytes.len() as u64).contains(&a),
                "{a:#x}"
            );
        }
        assert_eq!(h.exception_stubs % 16, 0);
        assert_eq!(h.irq_stubs % 16, 0);
        for name in [
            "noop",
            "ucall",
            "assert_eq",
            "ud2",
            "page_fault",
            "apic",
            "irq_wait",
        ] {
            img.main(name).unwrap();
        }
        assert!(matches!(img.main("nope"), Err(VmError::NoSuchMain { .. })));
    }

    #[test]
    fn rejects_non_elf_and_truncated_images() {
        assert!(Image::parse(b"hello").is_err());
        assert!(Image::parse(&GUEST_ELF[..64]).is_err());
        let mut pie = GUEST_ELF.to_vec();
        pie[16] = 3; // ET_DYN
        assert!(matches!(Image::parse(&pie), Err(VmError::Image(_))));
    }
}
