//! Kernel module metadata: the `depends=` string of a `.ko` file's `.modinfo` section, and a load order
//! that puts every module after the modules it depends on.
//!
//! A module is a relocatable ELF64 file; its `.modinfo` section is a run of NUL-terminated `key=value`
//! strings (`license=GPL`, `depends=reed_solomon,dm-mod,dm-bufio`, `name=dm_verity`, ...). Module names
//! treat `-` and `_` as the same character, so names are compared after [`normalize`].

use std::collections::BTreeMap;

/// Why a module's metadata could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModinfoError {
    /// The file is not a little-endian ELF64 object.
    #[error("not a little-endian ELF64 file")]
    NotElf64,
    /// A header or section lies outside the file.
    #[error("ELF structure points outside the file")]
    Truncated,
    /// There is no `.modinfo` section.
    #[error("no .modinfo section")]
    NoModinfo,
}

/// A module name with `-` replaced by `_`, the form the kernel uses internally.
pub(crate) fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The modules named by the `depends=` entry of the module file `ko` (empty when it depends on nothing).
pub(crate) fn depends(ko: &[u8]) -> Result<Vec<String>, ModinfoError> {
    let info = section(ko, b".modinfo")?.ok_or(ModinfoError::NoModinfo)?;
    Ok(info
        .split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(b"depends="))
        .map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .filter(|name| !name.is_empty())
                .map(normalize)
                .collect()
        })
        .unwrap_or_default())
}

/// The bytes of the section called `name` in the ELF64 little-endian file `elf`, if there is one.
fn section<'a>(elf: &'a [u8], name: &[u8]) -> Result<Option<&'a [u8]>, ModinfoError> {
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return Err(ModinfoError::NotElf64);
    }
    let shoff = read_u64(elf, 0x28)?;
    let shentsize = u64::from(read_u16(elf, 0x3A)?);
    let shnum = u64::from(read_u16(elf, 0x3C)?);
    let shstrndx = u64::from(read_u16(elf, 0x3E)?);
    if shentsize < 0x28 {
        return Err(ModinfoError::Truncated);
    }
    let header = |index: u64| -> Result<usize, ModinfoError> {
        let at = index
            .checked_mul(shentsize)
            .and_then(|rel| rel.checked_add(shoff))
            .ok_or(ModinfoError::Truncated)?;
        usize::try_from(at).map_err(|_| ModinfoError::Truncated)
    };
    let body = |at: usize| -> Result<&'a [u8], ModinfoError> {
        let offset = usize::try_from(read_u64(elf, at + 0x18)?).map_err(|_| ModinfoError::Truncated)?;
        let size = usize::try_from(read_u64(elf, at + 0x20)?).map_err(|_| ModinfoError::Truncated)?;
        elf.get(offset..offset.checked_add(size).ok_or(ModinfoError::Truncated)?)
            .ok_or(ModinfoError::Truncated)
    };
    let names = body(header(shstrndx)?)?;
    for index in 0..shnum {
        let at = header(index)?;
        let name_offset = usize::try_from(read_u32(elf, at)?).map_err(|_| ModinfoError::Truncated)?;
        let rest = names.get(name_offset..).ok_or(ModinfoError::Truncated)?;
        let this = rest.split(|&b| b == 0).next().unwrap_or_default();
        if this == name {
            return body(at).map(Some);
        }
    }
    Ok(None)
}

fn read_bytes<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], ModinfoError> {
    bytes
        .get(at..at.checked_add(N).ok_or(ModinfoError::Truncated)?)
        .and_then(|slice| slice.try_into().ok())
        .ok_or(ModinfoError::Truncated)
}

fn read_u16(bytes: &[u8], at: usize) -> Result<u16, ModinfoError> {
    read_bytes(bytes, at).map(u16::from_le_bytes)
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, ModinfoError> {
    read_bytes(bytes, at).map(u32::from_le_bytes)
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64, ModinfoError> {
    read_bytes(bytes, at).map(u64::from_le_bytes)
}

/// Orders `wanted` and everything they depend on (per `deps`, keyed by normalized name) so that every
/// module comes after its dependencies; each module appears once. A name missing from `deps` is returned
/// as the error. Dependency cycles (which the kernel's build refuses) are cut where they close.
pub(crate) fn load_order(wanted: &[String], deps: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>, String> {
    let mut order = Vec::new();
    for name in wanted {
        // Depth-first post-order with an explicit stack: (module, whether its dependencies are pushed).
        let mut stack = vec![(normalize(name), false)];
        let mut on_path = Vec::new();
        while let Some((module, expanded)) = stack.pop() {
            if order.contains(&module) {
                continue;
            }
            if expanded {
                on_path.retain(|m| m != &module);
                order.push(module);
                continue;
            }
            let module_deps = deps.get(&module).ok_or_else(|| module.clone())?;
            on_path.push(module.clone());
            stack.push((module, true));
            for dep in module_deps.iter().rev() {
                if !order.contains(dep) && !on_path.contains(dep) {
                    stack.push((dep.clone(), false));
                }
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 file: header, a section-name table and a `.modinfo` section.
    fn elf_with_modinfo(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let names_at = elf.len();
        elf.extend_from_slice(names);
        let info_at = elf.len();
        elf.extend_from_slice(modinfo);
        let shoff = elf.len().next_multiple_of(8);
        elf.resize(shoff, 0);
        // Section 0 is the null section; 1 the names; 2 .modinfo.
        for (name, offset, size) in [
            (0u32, 0usize, 0usize),
            (1, names_at, names.len()),
            (11, info_at, modinfo.len()),
        ] {
            let mut header = [0u8; 64];
            header[..4].copy_from_slice(&name.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            header[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&header);
        }
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3A..0x3C].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3E..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    #[test]
    fn reads_depends() {
        let elf = elf_with_modinfo(b"license=GPL\0depends=reed_solomon,dm-mod,dm-bufio\0name=dm_verity\0");
        assert_eq!(depends(&elf).unwrap(), ["reed_solomon", "dm_mod", "dm_bufio"]);
    }

    #[test]
    fn empty_depends() {
        let elf = elf_with_modinfo(b"depends=\0name=loop\0");
        assert!(depends(&elf).unwrap().is_empty());
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        assert_eq!(depends(b"not elf"), Err(ModinfoError::NotElf64));
        let elf = elf_with_modinfo(b"depends=x\0");
        for cut in [10, 0x40, elf.len() - 30] {
            assert!(depends(&elf[..cut]).is_err(), "cut at {cut}");
        }
        let mut wild = elf.clone();
        wild[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(depends(&wild), Err(ModinfoError::Truncated));
    }

    #[test]
    fn dependencies_load_first() {
        let deps: BTreeMap<String, Vec<String>> = [
            ("dm_verity", vec!["reed_solomon", "dm_mod", "dm_bufio"]),
            ("dm_bufio", vec!["dm_mod"]),
            ("dm_mod", vec![]),
            ("reed_solomon", vec![]),
            ("erofs", vec!["libcrc32c"]),
            ("libcrc32c", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        let order = load_order(&["dm-verity".into(), "erofs".into(), "dm-mod".into()], &deps).unwrap();
        assert_eq!(
            order,
            ["reed_solomon", "dm_mod", "dm_bufio", "dm_verity", "libcrc32c", "erofs"]
        );
        assert_eq!(load_order(&["nope".into()], &deps), Err("nope".into()));
    }
}
