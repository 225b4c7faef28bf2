//! Link-time data layout of badger's release binary (issue 13).
//!
//! The agent reads a few kilobytes of constants every tick: format templates, vtables, jump
//! tables, stat names. The default link scatters them over 0.8 MB of `.rodata` and 0.3 MB of
//! `.data.rel.ro`, and the kernel maps the 64 KiB around every page fault of a file mapping,
//! so those few kilobytes cost about 0.7 MB of resident memory. `packaging/symbol-order.txt`
//! does the same job for functions, by name; constants can't be named that way: rustc names
//! them by a counter (`.rodata..Lanon.<codegen unit hash>.<n>`) that any change to the code
//! renumbers. So `packaging/data-order.txt` names each one by its content instead, one
//! `<kind> <size> <crc32>` line per section, hottest first, where the checksum covers the
//! section's bytes and its relocations (each target by symbol name, or by size and content for
//! another anonymous section). `scripts/symbol-order.sh` regenerates the file from a trace of
//! the agent's data reads.
//!
//! At the link, the build script (build.rs) runs [`wrapper`] as gcc's `-wrapper` of the
//! link step, on release builds linked by lld. It reads the sections of the LTO objects
//! (`*.rcgu.o`) on the command line, matches them against the order file and writes a linker
//! script next to the output (`<output>.data-order.ld`, see [`script`]), which gathers Rust's
//! merged strings, the merged constant pools and then the listed sections into one
//! `.rodata.hot` output section right after the dynamic-linking tables, and puts the listed
//! `.data.rel.ro` sections first in theirs. Then it runs the link with `-T` that script. A
//! stale order file only matches fewer sections; a missing one, an unreadable object or a
//! link that fails with the script (a future linker, say) falls back to the default layout,
//! with a warning, so the layout can cost memory but never a build.
//!
//! Why the crates: `object` reads ELF (sections, relocations, symbols) as the Rust toolchain
//! itself does; `crc32fast` is the checksum the workspace already uses (badger-outbox).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionFlags, SymbolKind};

/// ELF's flag of a mergeable section (constant pools, strings): the linker merges those
/// across objects, so they are placed whole, by name, not by content.
const SHF_MERGE: u64 = 0x10;

/// The output sections a listed section goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Read-only constants without pointers: `.rodata.*`.
    Rodata,
    /// Constants with pointers (vtables, `fmt::Arguments` pieces): `.data.rel.ro.*`, read-only
    /// once the dynamic linker has relocated them.
    DataRelRo,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        if name.starts_with(".data.rel.ro.") {
            Some(Kind::DataRelRo)
        } else if name.starts_with(".rodata.") {
            Some(Kind::Rodata)
        } else {
            None
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Rodata => ".rodata",
            Kind::DataRelRo => ".data.rel.ro",
        })
    }
}

/// The content-addressed name of a section: what a line of the order file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: Kind,
    pub size: u64,
    pub crc: u32,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {:08x}", self.kind, self.size, self.crc)
    }
}

impl Key {
    /// Parses one line of the order file (`<kind> <size> <crc32 in hex>`); `None` for a
    /// comment, a blank line or anything else.
    pub fn parse(line: &str) -> Option<Key> {
        let mut it = line.split_whitespace();
        let kind = match it.next()? {
            ".rodata" => Kind::Rodata,
            ".data.rel.ro" => Kind::DataRelRo,
            _ => return None,
        };
        let size = it.next()?.parse().ok()?;
        let crc = u32::from_str_radix(it.next()?, 16).ok()?;
        Some(Key { kind, size, crc })
    }
}

/// One orderable section of an object: its name in this build and its content key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub key: Key,
}

/// The orderable sections of an ELF object: the non-mergeable `.rodata.*` and
/// `.data.rel.ro.*` ones, each with its content key.
pub fn sections(data: &[u8]) -> object::Result<Vec<Section>> {
    let file = object::File::parse(data)?;
    let mut out = Vec::new();
    for s in file.sections() {
        let name = s.name()?;
        let Some(kind) = Kind::of(name) else { continue };
        if let SectionFlags::Elf { sh_flags } = s.flags() {
            if sh_flags & SHF_MERGE != 0 {
                continue;
            }
        }
        let mut h = crc32fast::Hasher::new();
        h.update(name.split(".L").next().unwrap_or_default().as_bytes());
        h.update(&s.align().to_le_bytes());
        h.update(s.data()?);
        let mut relocs: Vec<_> = s.relocations().collect();
        relocs.sort_by_key(|(offset, _)| *offset);
        for (offset, r) in relocs {
            h.update(&offset.to_le_bytes());
            if let RelocationFlags::Elf { r_type } = r.flags() {
                h.update(&r_type.to_le_bytes());
            }
            h.update(&r.addend().to_le_bytes());
            if let RelocationTarget::Symbol(index) = r.target() {
                target(&file, index, &mut h)?;
            }
        }
        out.push(Section { name: name.to_owned(), key: Key { kind, size: s.size(), crc: h.finalize() } });
    }
    Ok(out)
}

/// Feeds what a relocation points at into `h`, in terms that survive a rebuild: a named
/// symbol by its name (functions and statics keep their mangled names), a section by its
/// name unless rustc numbered it (`.L…`), in which case by its size and bytes.
fn target(file: &object::File, index: object::SymbolIndex, h: &mut crc32fast::Hasher) -> object::Result<()> {
    let sym = file.symbol_by_index(index)?;
    if sym.kind() != SymbolKind::Section {
        h.update(sym.name_bytes()?);
        return Ok(());
    }
    let Some(section) = sym.section_index() else { return Ok(()) };
    let section = file.section_by_index(section)?;
    let name = section.name()?;
    if name.contains(".L") {
        h.update(&section.size().to_le_bytes());
        h.update(section.data()?);
    } else {
        h.update(name.as_bytes());
    }
    Ok(())
}

/// The linker script that places the sections the order file lists (`order`, its text) in
/// its order, found by key among `sections` (every match, when identical constants share a
/// key), and how many it placed. The `.rodata` ones go to `.rodata.hot`, inserted before
/// `.gcc_except_table`, right after the tables the dynamic linker reads at start-up, behind
/// Rust's merged strings (format templates among them: one input section that every phase
/// reads a little of, and no order can split) and the merged constant pools, so that the
/// listed constants of the phases after the steady state (the first ticks, the steps of
/// start-up) follow the steady state's rather than a window beyond the strings; the
/// `.data.rel.ro` ones go first in `.data.rel.ro`.
pub fn script(order: &str, sections: &[Section]) -> (String, usize) {
    let mut by_key: HashMap<Key, Vec<&str>> = HashMap::new();
    for s in sections {
        by_key.entry(s.key).or_default().push(&s.name);
    }
    let mut ro = String::new();
    let mut relro = String::new();
    let mut placed = 0;
    for key in order.lines().filter_map(Key::parse) {
        let Some(names) = by_key.remove(&key) else { continue };
        let to = if key.kind == Kind::Rodata { &mut ro } else { &mut relro };
        for name in names {
            to.push_str(&format!("    *({name})\n"));
            placed += 1;
        }
    }
    let text = format!(
        "/* Generated by badger-linkorder from packaging/data-order.txt: {placed} sections. */\n\
         SECTIONS\n{{\n  .rodata.hot :\n  {{\n    \
         *.rcgu.o(.rodata.str1.1)\n    *(.rodata.cst32)\n    *(.rodata.cst16)\n    *(.rodata.cst8)\n    *(.rodata.cst4)\n{ro}  }}\n}}\n\
         INSERT BEFORE .gcc_except_table;\n\
         SECTIONS\n{{\n  .data.rel.ro :\n  {{\n{relro}    *(.data.rel.ro .data.rel.ro.*)\n  }}\n}}\n\
         INSERT BEFORE .dynamic;\n"
    );
    (text, placed)
}

/// gcc's `-wrapper` for the link step: `args` are `--data-order FILE [--dump PATH]` and then
/// the command gcc runs (collect2 and its arguments). Returns the link's exit code. With
/// `--dump`, writes every orderable section of the objects as `<name>\t<key>` lines to PATH,
/// for `scripts/symbol-order.sh`.
pub fn wrapper(args: &[OsString]) -> i32 {
    let mut rest = args;
    let mut order_file = None;
    let mut dump = None;
    while let [flag, value, tail @ ..] = rest {
        match flag.to_str() {
            Some("--data-order") => order_file = Some(value),
            Some("--dump") => dump = Some(value),
            _ => break,
        }
        rest = tail;
    }
    let [program, link_args @ ..] = rest else {
        eprintln!("badger-linkorder: no command to run");
        return 2;
    };
    let script_arg = match layout(link_args, order_file.map(Path::new), dump.map(Path::new)) {
        Ok(script) => script,
        Err(e) => {
            eprintln!("badger-linkorder: {e}; linking in the default data order");
            None
        }
    };
    if let Some(script) = &script_arg {
        match Command::new(program).args(link_args).arg("-T").arg(script).status() {
            Ok(s) if s.success() => return 0,
            _ => eprintln!(
                "badger-linkorder: the link with {} failed; linking again in the default data order",
                script.display()
            ),
        }
    }
    match Command::new(program).args(link_args).status() {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("badger-linkorder: {}: {e}", Path::new(program).display());
            1
        }
    }
}

/// Writes the linker script for the link `args` (next to its `-o` output), or returns `None`
/// when there is nothing to order.
fn layout(args: &[OsString], order_file: Option<&Path>, dump: Option<&Path>) -> Result<Option<PathBuf>, String> {
    // rustc's objects (the LTO one, with every Rust constant), not the C libraries' archives.
    let objects: Vec<&OsString> = args.iter().filter(|a| a.to_string_lossy().ends_with(".rcgu.o")).collect();
    let output = args.iter().zip(args.iter().skip(1)).find(|(flag, _)| *flag == "-o").map(|(_, out)| Path::new(out));
    let mut all = Vec::new();
    for o in &objects {
        let data = std::fs::read(o).map_err(|e| format!("{}: {e}", Path::new(o).display()))?;
        all.extend(sections(&data).map_err(|e| format!("{}: {e}", Path::new(o).display()))?);
    }
    if let Some(dump) = dump {
        let text: String = all.iter().map(|s| format!("{}\t{}\n", s.name, s.key)).collect();
        std::fs::write(dump, text).map_err(|e| format!("{}: {e}", dump.display()))?;
    }
    let (Some(order_file), Some(output)) = (order_file, output) else { return Ok(None) };
    let order = match std::fs::read_to_string(order_file) {
        Ok(order) => order,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", order_file.display())),
    };
    let (text, placed) = script(&order, &all);
    if placed == 0 {
        return Ok(None);
    }
    let mut path = output.as_os_str().to_owned();
    path.push(".data-order.ld");
    let path = PathBuf::from(path);
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object as WObject, Relocation, Symbol, SymbolSection};
    use object::{
        Architecture, BinaryFormat, Endianness, RelocationEncoding, RelocationKind, SectionKind, SymbolFlags,
        SymbolScope,
    };

    /// An object like rustc's: a function, an anonymous string, an anonymous vtable-like
    /// constant pointing at both, numbered from `n`, with `filler` anonymous constants before
    /// them (what renumbers them in another build).
    fn object(n: usize, filler: usize) -> Vec<u8> {
        let mut o = WObject::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
        let text = o.add_section(vec![], b".text._ZN3foo3run17h0123456789abcdefE".to_vec(), SectionKind::Text);
        let f = o.append_section_data(text, &[0xc3; 16], 16);
        let run = o.add_symbol(Symbol {
            name: b"_ZN3foo3run17h0123456789abcdefE".to_vec(),
            value: f,
            size: 16,
            kind: object::SymbolKind::Text,
            scope: SymbolScope::Compilation,
            weak: false,
            section: SymbolSection::Section(text),
            flags: SymbolFlags::None,
        });
        for i in 0..filler {
            let s = o.add_section(
                vec![],
                format!(".rodata..Lanon.cafe.{}", n + 100 + i).into_bytes(),
                SectionKind::ReadOnlyData,
            );
            o.append_section_data(s, format!("filler {i}").as_bytes(), 1);
        }
        let s = o.add_section(vec![], format!(".rodata..Lanon.cafe.{n}").into_bytes(), SectionKind::ReadOnlyData);
        o.append_section_data(s, b"cpu.user", 1);
        let v = o.add_section(
            vec![],
            format!(".data.rel.ro..Lanon.cafe.{}", n + 1).into_bytes(),
            SectionKind::ReadOnlyDataWithRel,
        );
        o.append_section_data(v, &[0; 24], 8);
        let flags = |size| RelocationFlags::Generic {
            kind: RelocationKind::Absolute,
            encoding: RelocationEncoding::Generic,
            size,
        };
        o.add_relocation(v, Relocation { offset: 0, symbol: run, addend: 0, flags: flags(64) }).unwrap();
        let str_sym = o.section_symbol(s);
        o.add_relocation(v, Relocation { offset: 8, symbol: str_sym, addend: 0, flags: flags(64) }).unwrap();
        o.write().unwrap()
    }

    fn named<'a>(sections: &'a [Section], name: &str) -> &'a Section {
        sections.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn a_constant_keeps_its_key_when_a_rebuild_renumbers_it() {
        let a = sections(&object(1, 0)).unwrap();
        let b = sections(&object(7, 3)).unwrap();
        assert_eq!(named(&a, ".rodata..Lanon.cafe.1").key, named(&b, ".rodata..Lanon.cafe.7").key);
        assert_eq!(named(&a, ".data.rel.ro..Lanon.cafe.2").key, named(&b, ".data.rel.ro..Lanon.cafe.8").key);
        let key = named(&a, ".data.rel.ro..Lanon.cafe.2").key;
        assert_eq!((key.kind, key.size), (Kind::DataRelRo, 24));
        assert_eq!(Key::parse(&key.to_string()), Some(key));
        // Functions are not data.
        assert!(a.iter().all(|s| !s.name.starts_with(".text")));
    }

    #[test]
    fn the_script_places_the_listed_sections_in_the_files_order_under_their_new_names() {
        let profiled = sections(&object(1, 0)).unwrap();
        let order = format!(
            "# hottest first\n{}\n{}\n.rodata 3 0000beef\n",
            named(&profiled, ".data.rel.ro..Lanon.cafe.2").key,
            named(&profiled, ".rodata..Lanon.cafe.1").key
        );
        let (text, placed) = script(&order, &sections(&object(7, 3)).unwrap());
        assert_eq!(placed, 2);
        let hot = text.find("    *(.rodata..Lanon.cafe.7)\n").unwrap();
        // In .rodata.hot, after the merged strings and constant pools.
        let start = text.find(".rodata.hot :").unwrap();
        assert!(start < text.find("*.rcgu.o(.rodata.str1.1)").unwrap());
        assert!(text.find("*(.rodata.cst4)").unwrap() < hot);
        assert!(hot < text.find("INSERT BEFORE .gcc_except_table;").unwrap());
        let relro = text.find("    *(.data.rel.ro..Lanon.cafe.8)\n    *(.data.rel.ro .data.rel.ro.*)\n").unwrap();
        assert!(relro > text.find(".data.rel.ro :").unwrap());
        assert!(!text.contains("filler") && !text.contains("cafe.10"));
        assert_eq!(script("", &[]).1, 0);
    }
}
