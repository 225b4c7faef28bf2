//! The disk spool of an outbox: append-only segment files of framed records, read back one
//! record at a time (never a whole segment into memory). See the module doc of
//! [`super`] for the format and the guarantees.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// `u32 BE body length` + `u32 BE crc32 of the body`.
pub(super) const HEADER: u64 = 8;
/// The body starts with the record's point count (`u32 BE`), then the record's bytes.
pub(super) const POINTS: u64 = 4;
/// Bytes a record of `len` bytes takes on disk.
pub(super) fn frame_len(len: usize) -> u64 {
    HEADER + POINTS + len as u64
}

const OFFSET_FILE: &str = "head.offset";
const LOCK_FILE: &str = "lock";
const READ_BUF: usize = 64 * 1024;

/// Where a record is in the spool: segment id, offset of its frame, frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub seg: u64,
    pub off: u64,
    pub len: u64,
}

/// A record read back from the spool.
pub(super) struct Loaded {
    pub data: Vec<u8>,
    pub points: u64,
    pub pos: Pos,
}

struct Segment {
    id: u64,
    path: PathBuf,
    /// Bytes in the file.
    len: u64,
    /// End of the readable (checked) part: `len`, or where a corrupt record starts.
    end: u64,
    /// Records (and their points) not yet acknowledged, i.e. at or after `Spool::start`.
    records: u64,
    points: u64,
    /// Of those, the ones not yet read into memory.
    unread_records: u64,
    unread_points: u64,
}

pub(super) enum Opened {
    Open(Box<Spool>),
    /// Another outbox (the same emitter before a reload) holds the spool's lock.
    Busy,
}

pub(super) struct Spool {
    dir: PathBuf,
    label: String,
    _lock: File,
    segs: VecDeque<Segment>,
    /// Offset of the first unacknowledged record in `segs[0]`.
    start: u64,
    /// Appends to `segs.back()` when set; a loaded segment is never appended to.
    writer: Option<File>,
    next_id: u64,
    segment_max: u64,
    pub max_bytes: u64,
    /// Read cursor: the next record to read is at `read_off` in segment `read_seg` (a
    /// segment in `segs`, or `next_id` when everything was read).
    read_seg: u64,
    read_off: u64,
    reader: Option<(u64, BufReader<File>)>,
    /// The header at the cursor, already read: (body length, crc).
    pending: Option<(u64, u32)>,
    offset_file: bool,
    scratch: Vec<u8>,
    /// Records (and points) lost to corruption found since the outbox last took them.
    pub lost_records: u64,
    pub lost_points: u64,
    /// Corrupt files and I/O errors since the outbox last took them.
    pub errors: u64,
}

impl Spool {
    /// Opens (creating it) the spool directory `dir`, takes its lock and loads the segments
    /// left by an earlier run. `label` names the emitter in log lines.
    pub fn open(dir: &Path, label: &str, max_bytes: u64) -> Result<Opened, String> {
        fs::create_dir_all(dir).map_err(|e| format!("spool directory {}: cannot create it: {e}", dir.display()))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("spool directory {}: cannot open {}: {e}", dir.display(), lock_path.display()))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => return Ok(Opened::Busy),
            Err(e) => {
                return Err(format!("spool directory {}: cannot lock {}: {e}", dir.display(), lock_path.display()))
            }
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            label: label.to_string(),
            _lock: lock,
            segs: VecDeque::new(),
            start: 0,
            writer: None,
            next_id: 1,
            segment_max: (max_bytes / 8).clamp(4 * 1024, 4 * 1024 * 1024),
            max_bytes,
            read_seg: 1,
            read_off: 0,
            reader: None,
            pending: None,
            offset_file: dir.join(OFFSET_FILE).exists(),
            scratch: Vec::new(),
            lost_records: 0,
            lost_points: 0,
            errors: 0,
        };
        spool.load().map_err(|e| format!("spool directory {}: {e}", dir.display()))?;
        Ok(Opened::Open(Box::new(spool)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of unacknowledged data on disk.
    pub fn bytes(&self) -> u64 {
        self.segs.iter().map(|s| s.len).sum::<u64>().saturating_sub(self.start)
    }

    /// Records not yet acknowledged (read into memory or not).
    pub fn records(&self) -> u64 {
        self.segs.iter().map(|s| s.records).sum()
    }

    pub fn points(&self) -> u64 {
        self.segs.iter().map(|s| s.points).sum()
    }

    /// True when every record in the spool has been read into memory (or there is none).
    pub fn fully_read(&mut self) -> bool {
        self.peek().is_none()
    }

    fn index(&self, id: u64) -> Option<usize> {
        self.segs.iter().position(|s| s.id == id)
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:016}.seg"))
    }

    fn load(&mut self) -> io::Result<()> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else { continue };
            if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(id) = stem.parse::<u64>() {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        let head = self.read_offset_file();
        self.next_id = ids.last().copied().unwrap_or(0).max(head.map_or(0, |h| h.0)) + 1;
        for (i, &id) in ids.iter().enumerate() {
            let path = self.seg_path(id);
            // The saved position applies to the oldest file only.
            let start = match head {
                Some((hid, off)) if i == 0 && hid == id => off,
                _ => 0,
            };
            let scan = match scan(&path, start) {
                Ok(s) => s,
                Err(e) => {
                    log::error!("emitter \"{}\": spool file {}: {e}; skipping the file", self.label, path.display());
                    self.errors += 1;
                    continue;
                }
            };
            if let Some((at, what)) = &scan.error {
                log::error!(
                    "emitter \"{}\": spool file {}: {what} at byte {at}; skipping the rest of the file ({} bytes)",
                    self.label,
                    path.display(),
                    scan.len - at
                );
                self.errors += 1;
            }
            if !scan.start_ok {
                log::warn!(
                    "emitter \"{}\": spool file {}: the saved read position {start} is not a record boundary; reading the file from its start",
                    self.label,
                    path.display()
                );
            }
            if scan.records_after == 0 {
                // Nothing (good) left to send in it.
                let _ = fs::remove_file(&path);
                continue;
            }
            if self.segs.is_empty() {
                self.start = if scan.start_ok { start } else { 0 };
            }
            self.segs.push_back(Segment {
                id,
                path,
                len: scan.len,
                end: scan.end,
                records: scan.records_after,
                points: scan.points_after,
                unread_records: scan.records_after,
                unread_points: scan.points_after,
            });
        }
        match self.segs.front() {
            Some(s) => {
                self.read_seg = s.id;
                self.read_off = self.start;
            }
            None => {
                self.read_seg = self.next_id;
                self.read_off = 0;
            }
        }
        self.drop_consumed();
        self.save_head();
        Ok(())
    }

    fn read_offset_file(&self) -> Option<(u64, u64)> {
        let text = fs::read_to_string(self.dir.join(OFFSET_FILE)).ok()?;
        let mut it = text.split_whitespace();
        let parsed = (|| Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?)))();
        if parsed.is_none() {
            log::warn!(
                "emitter \"{}\": spool file {} is not \"<segment> <offset>\"; ignoring it",
                self.label,
                self.dir.join(OFFSET_FILE).display()
            );
        }
        parsed
    }

    /// Saves the read position of the oldest segment (only when it is inside a segment).
    fn save_head(&mut self) {
        let path = self.dir.join(OFFSET_FILE);
        let result = match self.segs.front() {
            Some(s) if self.start > 0 => {
                let tmp = self.dir.join(format!("{OFFSET_FILE}.tmp"));
                self.offset_file = true;
                fs::write(&tmp, format!("{} {}\n", s.id, self.start)).and_then(|_| fs::rename(&tmp, &path))
            }
            _ if self.offset_file => {
                self.offset_file = false;
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.errors += 1;
            log::warn!(
                "emitter \"{}\": spool: cannot save the read position in {}: {e} (records may be sent twice after a restart)",
                self.label,
                path.display()
            );
        }
    }

    /// Appends one record.
    pub fn write(&mut self, data: &[u8], points: u64) -> io::Result<Pos> {
        let r = self.append(data, points);
        if r.is_err() {
            self.errors += 1;
        }
        r
    }

    fn append(&mut self, data: &[u8], points: u64) -> io::Result<Pos> {
        let frame = frame_len(data.len());
        let body_len = u32::try_from(POINTS + data.len() as u64)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too large for the spool"))?;
        let roll = match (&self.writer, self.segs.back()) {
            (Some(_), Some(s)) => s.len > 0 && s.len + frame > self.segment_max,
            _ => true,
        };
        if roll {
            let id = self.next_id;
            let path = self.seg_path(id);
            let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
            self.next_id += 1;
            self.writer = Some(file);
            self.segs.push_back(Segment {
                id,
                path,
                len: 0,
                end: 0,
                records: 0,
                points: 0,
                unread_records: 0,
                unread_points: 0,
            });
        }
        let pts = u32::try_from(points).unwrap_or(u32::MAX);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&pts.to_be_bytes());
        crc.update(data);
        self.scratch.clear();
        self.scratch.extend_from_slice(&body_len.to_be_bytes());
        self.scratch.extend_from_slice(&crc.finalize().to_be_bytes());
        self.scratch.extend_from_slice(&pts.to_be_bytes());
        self.scratch.extend_from_slice(data);
        let (Some(file), Some(seg)) = (self.writer.as_mut(), self.segs.back_mut()) else {
            return Err(io::Error::other("no segment to write to"));
        };
        if let Err(e) = file.write_all(&self.scratch) {
            // Take back a partial frame; the next record goes to a new segment anyway.
            let _ = file.set_len(seg.len);
            self.writer = None;
            return Err(e);
        }
        let pos = Pos { seg: seg.id, off: seg.len, len: frame };
        seg.len += frame;
        seg.end = seg.len;
        seg.records += 1;
        seg.points += points;
        seg.unread_records += 1;
        seg.unread_points += points;
        Ok(pos)
    }

    /// Marks a record just written as read (the outbox keeps it in memory); only valid
    /// when the spool was [`Spool::fully_read`] before the write.
    pub fn mark_read(&mut self, pos: Pos, points: u64) {
        if let Some(i) = self.index(pos.seg) {
            let s = &mut self.segs[i];
            s.unread_records = s.unread_records.saturating_sub(1);
            s.unread_points = s.unread_points.saturating_sub(points);
        }
        self.read_seg = pos.seg;
        self.read_off = pos.off + pos.len;
        self.reader = None;
        self.pending = None;
    }

    /// Forgets the records read into memory from `first` on: they are read again later.
    pub fn rewind(&mut self, first: Pos, evicted: impl Iterator<Item = (u64, u64)>) {
        for (seg, points) in evicted {
            if let Some(i) = self.index(seg) {
                self.segs[i].unread_records += 1;
                self.segs[i].unread_points += points;
            }
        }
        self.read_seg = first.seg;
        self.read_off = first.off;
        self.reader = None;
        self.pending = None;
    }

    /// The byte length of the next unread record (reading its header), or `None` when
    /// everything was read. Corrupt records are reported and the rest of their file skipped.
    pub fn peek(&mut self) -> Option<u64> {
        loop {
            let i = self.index(self.read_seg)?;
            if self.read_off >= self.segs[i].end {
                if i + 1 < self.segs.len() {
                    self.read_seg = self.segs[i + 1].id;
                    self.read_off = 0;
                    self.reader = None;
                    self.pending = None;
                    continue;
                }
                return None;
            }
            if let Some((body, _)) = self.pending {
                return Some(body - POINTS);
            }
            match self.read_header(i) {
                Ok((body, crc)) => {
                    self.pending = Some((body, crc));
                    return Some(body - POINTS);
                }
                Err(what) => self.corrupt(i, &what),
            }
        }
    }

    fn read_header(&mut self, i: usize) -> Result<(u64, u32), String> {
        let seg = &self.segs[i];
        let remaining = seg.end - self.read_off;
        if self.reader.as_ref().is_none_or(|(id, _)| *id != seg.id) {
            let mut f = File::open(&seg.path).map_err(|e| format!("cannot open it: {e}"))?;
            f.seek(SeekFrom::Start(self.read_off)).map_err(|e| format!("cannot seek: {e}"))?;
            self.reader = Some((seg.id, BufReader::with_capacity(READ_BUF, f)));
        }
        let Some((_, r)) = self.reader.as_mut() else { return Err("no reader".into()) };
        if remaining < HEADER {
            return Err("truncated record header".into());
        }
        let mut h = [0u8; HEADER as usize];
        r.read_exact(&mut h).map_err(|e| format!("short read: {e}"))?;
        let body = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
        let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        if body < POINTS || body > remaining - HEADER {
            return Err(format!("bad record length {body}"));
        }
        Ok((body, crc))
    }

    /// Reads the next record into memory.
    pub fn read(&mut self) -> Option<Loaded> {
        loop {
            self.peek()?;
            let i = self.index(self.read_seg)?;
            let (body, crc) = self.pending.take()?;
            match self.read_body(body, crc) {
                Ok((data, points)) => {
                    let pos = Pos { seg: self.read_seg, off: self.read_off, len: HEADER + body };
                    self.read_off += HEADER + body;
                    let s = &mut self.segs[i];
                    s.unread_records = s.unread_records.saturating_sub(1);
                    s.unread_points = s.unread_points.saturating_sub(points);
                    return Some(Loaded { data, points, pos });
                }
                Err(what) => self.corrupt(i, &what),
            }
        }
    }

    fn read_body(&mut self, body: u64, crc: u32) -> Result<(Vec<u8>, u64), String> {
        let Some((_, r)) = self.reader.as_mut() else { return Err("no reader".into()) };
        let mut p = [0u8; POINTS as usize];
        r.read_exact(&mut p).map_err(|e| format!("short read: {e}"))?;
        let len = usize::try_from(body - POINTS).map_err(|_| "record too large".to_string())?;
        let mut data = vec![0u8; len];
        r.read_exact(&mut data).map_err(|e| format!("short read: {e}"))?;
        let mut h = crc32fast::Hasher::new();
        h.update(&p);
        h.update(&data);
        if h.finalize() != crc {
            return Err("bad crc".into());
        }
        Ok((data, u64::from(u32::from_be_bytes(p))))
    }

    /// Reports a corrupt record at the cursor of segment `i` and gives up the rest of it.
    fn corrupt(&mut self, i: usize, what: &str) {
        let at = self.read_off;
        let label = self.label.clone();
        let is_back = i + 1 == self.segs.len();
        let s = &mut self.segs[i];
        log::error!(
            "emitter \"{label}\": spool file {}: {what} at byte {at}; skipping the rest of the file ({} bytes, {} records)",
            s.path.display(),
            s.len.saturating_sub(at),
            s.unread_records
        );
        self.errors += 1;
        self.lost_records += s.unread_records;
        self.lost_points += s.unread_points;
        s.records -= s.unread_records;
        s.points -= s.unread_points;
        s.unread_records = 0;
        s.unread_points = 0;
        s.end = at;
        if is_back {
            // Never append behind a bad record.
            self.writer = None;
        }
        self.reader = None;
        self.pending = None;
    }

    /// Acknowledges records sent (or given up), oldest first: `(position, points)`.
    pub fn ack(&mut self, acked: impl Iterator<Item = (Pos, u64)>) {
        let mut any = false;
        for (pos, points) in acked {
            while self.segs.front().is_some_and(|s| s.id < pos.seg) {
                self.remove_front();
            }
            if let Some(s) = self.segs.front_mut() {
                if s.id == pos.seg {
                    s.records = s.records.saturating_sub(1);
                    s.points = s.points.saturating_sub(points);
                    self.start = pos.off + pos.len;
                    any = true;
                }
            }
        }
        if any {
            self.drop_consumed();
            self.save_head();
        }
    }

    /// Deletes the oldest segments that hold nothing more to send (not the one written to).
    fn drop_consumed(&mut self) {
        while let Some(s) = self.segs.front() {
            let written_to = self.writer.is_some() && self.segs.len() == 1;
            if written_to || self.start < s.end {
                break;
            }
            self.remove_front();
        }
    }

    fn remove_front(&mut self) -> Option<Segment> {
        let s = self.segs.pop_front()?;
        if let Err(e) = fs::remove_file(&s.path) {
            if e.kind() != io::ErrorKind::NotFound {
                self.errors += 1;
                log::warn!("emitter \"{}\": spool: cannot delete {}: {e}", self.label, s.path.display());
            }
        }
        self.start = 0;
        if self.segs.is_empty() {
            self.writer = None;
        }
        if self.read_seg == s.id {
            self.reader = None;
            self.pending = None;
            self.read_off = 0;
            self.read_seg = self.segs.front().map_or(self.next_id, |n| n.id);
        }
        Some(s)
    }

    /// Deletes the oldest segment to make room: returns its id and the records and points
    /// in it that were not sent.
    pub fn drop_front(&mut self) -> Option<(u64, u64, u64)> {
        let s = self.remove_front()?;
        self.save_head();
        Some((s.id, s.records, s.points))
    }

    /// Deletes everything (called when every record was sent), and lets the write buffer
    /// go: it grew to the largest record of the outage, and only the next outage writes.
    pub fn reset(&mut self) {
        while !self.segs.is_empty() {
            self.remove_front();
        }
        self.scratch = Vec::new();
        self.read_seg = self.next_id;
        self.read_off = 0;
        self.save_head();
    }

    /// The write buffer's capacity (tests: it is let go once the spool is emptied).
    #[cfg(test)]
    pub(crate) fn scratch_capacity(&self) -> usize {
        self.scratch.capacity()
    }

    /// Flushes the segment being written to the disk.
    pub fn sync(&mut self) {
        if let Some(f) = &self.writer {
            if let Err(e) = f.sync_data() {
                self.errors += 1;
                log::warn!("emitter \"{}\": spool: sync: {e}", self.label);
            }
        }
    }
}

struct Scan {
    len: u64,
    end: u64,
    records: u64,
    points: u64,
    records_after: u64,
    points_after: u64,
    /// Whether `start` is a record boundary (or 0).
    start_ok: bool,
    error: Option<(u64, String)>,
}

/// Checks every record of a segment file without holding more than a small buffer.
/// `Err` only when the file cannot be opened; bad records end the scan (`Scan::error`).
fn scan(path: &Path, start: u64) -> io::Result<Scan> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut r = BufReader::with_capacity(READ_BUF, file);
    let mut s = Scan {
        len,
        end: 0,
        records: 0,
        points: 0,
        records_after: 0,
        points_after: 0,
        start_ok: start == 0,
        error: None,
    };
    let mut chunk = vec![0u8; READ_BUF];
    let mut off = 0u64;
    while off < len {
        if off == start {
            s.start_ok = true;
        }
        match scan_frame(&mut r, &mut chunk, len - off) {
            Ok((frame, points)) => {
                s.records += 1;
                s.points += points;
                if off >= start {
                    s.records_after += 1;
                    s.points_after += points;
                }
                off += frame;
            }
            Err(what) => {
                s.error = Some((off, what));
                break;
            }
        }
    }
    if off == start {
        s.start_ok = true;
    }
    s.end = off;
    if !s.start_ok {
        s.records_after = s.records;
        s.points_after = s.points;
    }
    Ok(s)
}

/// Checks the frame at the reader's position; returns its length and its points.
fn scan_frame(r: &mut impl Read, chunk: &mut [u8], remaining: u64) -> Result<(u64, u64), String> {
    if remaining < HEADER + POINTS {
        return Err("truncated record".into());
    }
    let mut h = [0u8; (HEADER + POINTS) as usize];
    r.read_exact(&mut h).map_err(|e| format!("short read: {e}"))?;
    let body = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let points = u64::from(u32::from_be_bytes([h[8], h[9], h[10], h[11]]));
    if body < POINTS {
        return Err(format!("bad record length {body}"));
    }
    if body > remaining - HEADER {
        return Err(format!("record length {body} runs past the end of the file (truncated)"));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&h[HEADER as usize..]);
    let mut left = body - POINTS;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        r.read_exact(&mut chunk[..n]).map_err(|e| format!("short read: {e}"))?;
        hasher.update(&chunk[..n]);
        left -= n as u64;
    }
    if hasher.finalize() != crc {
        return Err("bad crc".into());
    }
    Ok((HEADER + body, points))
}
