//! Streaming copies between files: in-kernel (`copy_file_range`) where possible, bounded
//! buffers otherwise, and holes of the source left as holes in the destination.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Buffer size of the user-space fallback copy.
pub(crate) const BUF: usize = 1 << 20;

/// Copies `len` bytes of `src` at `src_off` to `dst` at `dst_off`, positionally (file positions
/// are left alone). Holes of `src` are skipped, so they read back as zeros from a fresh `dst`
/// (the caller sets the final length). Errors if `src` ends early.
pub(crate) fn copy_range(src: &File, src_off: u64, len: u64, dst: &File, dst_off: u64) -> io::Result<()> {
    let end = src_off.checked_add(len).ok_or_else(|| io::Error::other("source range overflows"))?;
    let mut pos = src_off;
    while pos < end {
        let data = match seek(src, pos, libc::SEEK_DATA)? {
            Seek::At(d) => d.min(end),
            Seek::NoMore => end,
            Seek::Unsupported => pos,
        };
        if data >= end {
            // Only a hole remains: check that the source really is that long.
            let src_len = src.metadata()?.len();
            if src_len < end {
                return Err(short(src_len, end));
            }
            break;
        }
        let hole = match seek(src, data, libc::SEEK_HOLE)? {
            Seek::At(h) => h.min(end),
            Seek::NoMore | Seek::Unsupported => end,
        };
        copy_data(src, data, dst, dst_off + (data - src_off), hole - data)?;
        pos = hole;
    }
    Ok(())
}

enum Seek {
    At(u64),
    NoMore,
    Unsupported,
}

fn seek(f: &File, pos: u64, whence: libc::c_int) -> io::Result<Seek> {
    let Ok(off) = libc::off_t::try_from(pos) else { return Ok(Seek::Unsupported) };
    // SAFETY: lseek on a valid descriptor; the file position it changes is never used by this
    // crate (all reads and writes are positional).
    #[allow(unsafe_code)]
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r >= 0 {
        return Ok(Seek::At(r as u64));
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENXIO) => Ok(Seek::NoMore),
        Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) => Ok(Seek::Unsupported),
        _ => Err(e),
    }
}

fn copy_data(src: &File, mut src_off: u64, dst: &File, mut dst_off: u64, mut len: u64) -> io::Result<()> {
    while len > 0 {
        let chunk = len.min(1 << 30) as usize;
        let (Ok(mut a), Ok(mut b)) = (libc::loff_t::try_from(src_off), libc::loff_t::try_from(dst_off)) else {
            return copy_buffered(src, src_off, dst, dst_off, len);
        };
        // SAFETY: valid descriptors and pointers to local offsets; the kernel copies between the
        // files without touching our memory.
        #[allow(unsafe_code)]
        let n = unsafe { libc::copy_file_range(src.as_raw_fd(), &mut a, dst.as_raw_fd(), &mut b, chunk, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM) => {
                    copy_buffered(src, src_off, dst, dst_off, len)
                }
                _ => Err(e),
            };
        }
        if n == 0 {
            return Err(short(src_off, src_off + len));
        }
        src_off += n as u64;
        dst_off += n as u64;
        len -= n as u64;
    }
    Ok(())
}

fn copy_buffered(src: &File, mut src_off: u64, dst: &File, mut dst_off: u64, mut len: u64) -> io::Result<()> {
    let mut buf = vec![0u8; BUF.min(len as usize)];
    while len > 0 {
        let n = buf.len().min(len as usize);
        let got = src.read_at(&mut buf[..n], src_off)?;
        if got == 0 {
            return Err(short(src_off, src_off + len));
        }
        dst.write_all_at(&buf[..got], dst_off)?;
        src_off += got as u64;
        dst_off += got as u64;
        len -= got as u64;
    }
    Ok(())
}

fn short(have: u64, want: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("source file ends at byte {have}, expected at least {want} bytes (modified while being read?)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn copies_ranges_with_holes_and_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let src = File::create(&src_path).unwrap();
        src.set_len(3 << 20).unwrap();
        src.write_all_at(b"hello", 10).unwrap();
        src.write_all_at(b"world", (2 << 20) + 7).unwrap();
        drop(src);
        let src = File::open(&src_path).unwrap();
        let dst_path = dir.path().join("dst");
        let mut dst = File::create(&dst_path).unwrap();
        dst.write_all(b"abc").unwrap();
        copy_range(&src, 5, (3 << 20) - 5, &dst, 3).unwrap();
        dst.set_len(3 + (3 << 20) - 5).unwrap();
        let out = std::fs::read(&dst_path).unwrap();
        let whole = std::fs::read(&src_path).unwrap();
        assert_eq!(&out[..3], b"abc");
        assert_eq!(&out[3..], &whole[5..]);
        // a range past the end of the source is an error
        assert!(copy_range(&src, 1 << 20, 3 << 20, &dst, 0).is_err());
    }
}
