//! The runner's only `unsafe` code: thin wrappers over syscalls that nix
//! does not cover safely. Each block says why it is sound.

use std::io;
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};

use anyhow::bail;
use nix::pty::Winsize;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use nix::unistd::{ForkResult, Pid};

/// How many threads this process has, from /proc/self/task.
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// fork(2), refused unless this process has exactly one thread: a fork taken
/// while another thread holds a lock (malloc, stdio, a FUSE session) leaves
/// that lock held forever in the child.
pub fn fork() -> anyhow::Result<ForkResult> {
    fork_counted(thread_count()?)
}

/// [`fork`] for a process whose /proc does not show it (it joined a
/// container's mount namespace, whose /proc is the container's pid
/// namespace's): `threads` is its thread count, read before it joined.
pub fn fork_counted(threads: usize) -> anyhow::Result<ForkResult> {
    if threads != 1 {
        bail!("refusing to fork with {threads} threads: fork must happen before any thread starts");
    }
    // SAFETY: the process has exactly one thread (checked just above, and
    // only this thread could start another), so the child starts with no lock
    // held by a thread that does not exist in it.
    Ok(unsafe { nix::unistd::fork() }?)
}

/// pidfd_open(2): a descriptor that becomes readable when `pid` exits, so a
/// monitor can poll a child's exit together with other descriptors.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and shares no memory with us.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| io::Error::other("pidfd_open returned a bad fd"))?;
    // SAFETY: `fd` was just created by the kernel for us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Marks every descriptor from `first` up close-on-exec, so the container
/// process inherits nothing the CLI or monitor opened (store files, FUSE).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range takes integers only; CLOSE_RANGE_CLOEXEC closes
    // nothing now, so no OwnedFd in this process is invalidated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every descriptor from `first` up, for a forked process that
/// keeps none of them and never returns to code that owns one (`run
/// --init`'s init, a stdio relay): it ends in `_exit`, so no `OwnedFd` is
/// dropped after this.
pub fn close_all_from_before_exit(first: u32) {
    // The descriptors it closes may belong to `OwnedFd`s up the stack, but
    // the callers (a container's init, a stdio relay) never return and
    // exit with `_exit`, which runs no destructor, so none is closed twice
    // or used after this.
    close_range(first, u32::MAX);
}

/// Closes every descriptor from 3 up but `keep`: what a process that
/// becomes a container's (or an exec'd) process inherited from the CLI
/// and the monitor goes before the process resolves its user, working
/// directory or command, so that no path through `/proc/self/fd/N` can
/// lead out of the container (CVE-2024-21626's shape).
pub fn close_all_but(keep: &[BorrowedFd<'_>]) {
    let mut kept: Vec<u32> = keep.iter().map(|fd| fd.as_raw_fd() as u32).collect();
    kept.sort_unstable();
    let mut from = 3;
    for fd in kept.into_iter().filter(|&fd| fd >= 3) {
        if fd > from {
            close_range(from, fd - 1);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range takes integers only. The callers (a forked
    // process on its way to execve or `_exit`) own no `OwnedFd` in the
    // range that they will use or drop again.
    unsafe {
        libc::syscall(libc::SYS_close_range, first, last, 0);
    }
}

/// Makes descriptor number `target` a copy of `fd`, closing what it held,
/// for a forked process that lays out its descriptors by number before it
/// ends in `_exit` (a stdio relay).
pub fn dup_onto(fd: BorrowedFd<'_>, target: i32) -> io::Result<()> {
    // SAFETY: dup2 takes integers. What `target` held is closed; the
    // callers own it through no `OwnedFd` they will use or drop again
    // (they exit with `_exit`, see `close_all_from_before_exit`).
    if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A copy of `fd` numbered `min` or above (an `F_DUPFD`), for a forked
/// process laying out its descriptors by number (see [`dup_onto`]): moved
/// out of the way first, none is overwritten before it is copied.
pub fn dup_above(fd: BorrowedFd<'_>, min: i32) -> io::Result<i32> {
    // SAFETY: fcntl with F_DUPFD takes and returns integers; the new
    // descriptor is the caller's, closed with the rest before `_exit`.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(new)
}

/// A descriptor number as a `BorrowedFd`, for a descriptor the caller
/// knows is open for as long as it uses the result (stdio, or a pipe end
/// a forked relay keeps until it exits).
pub fn borrow_open_fd(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: the callers pass only descriptors that stay open while the
    // borrow is used (see above); a closed one would make the calls on it
    // fail with EBADF, not touch memory.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Makes the terminal `tty` the controlling terminal of this process, which
/// must be a session leader without one (right after setsid).
pub fn set_controlling_terminal(tty: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal) and
    // reads no memory from us.
    let ret = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The window size of terminal `tty`, or `None` when it is not a terminal.
pub fn window_size(tty: BorrowedFd<'_>) -> Option<Winsize> {
    let mut size = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `struct winsize` (Winsize is libc's
    // winsize) into the valid, exclusively borrowed `size`.
    let ret = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (ret == 0).then_some(size)
}

/// Sets the window size of terminal `tty` (the kernel sends SIGWINCH to its
/// foreground process group).
pub fn set_window_size(tty: BorrowedFd<'_>, size: &Winsize) -> io::Result<()> {
    // SAFETY: TIOCSWINSZ reads one `struct winsize` from the valid `size`.
    let ret = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, size) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets IFF_UP on the loopback interface of this network namespace.
pub fn bring_up_loopback() -> io::Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data (a name array and a union of integers
    // and sockaddrs) for which all-zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    interface_ioctl(sock.as_fd(), libc::SIOCGIFFLAGS, &mut request)?;
    // SAFETY: SIOCGIFFLAGS just filled the `ifru_flags` member of the union,
    // so reading it reads initialised data of the right type.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    interface_ioctl(sock.as_fd(), libc::SIOCSIFFLAGS, &mut request)
}

fn interface_ioctl(
    sock: BorrowedFd<'_>,
    request: libc::Ioctl,
    ifreq: &mut libc::ifreq,
) -> io::Result<()> {
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write one `struct ifreq`,
    // and `ifreq` is a valid, exclusively borrowed one.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), request, ifreq as *mut libc::ifreq) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends signal number `signal` to `pid`: kill(2) for the realtime
/// signals too, which nix's `Signal` cannot name.
pub fn send_signal(pid: Pid, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) only takes two integers; no memory is involved.
    let ret = unsafe { libc::kill(pid.as_raw(), signal) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts every signal back to its default action and unblocks all of them,
/// so the container's process does not inherit Rust's ignored SIGPIPE or the
/// CLI's blocked signals (both survive execve).
pub fn reset_signal_handling() -> nix::Result<()> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for signal in Signal::iterator().filter(|s| !matches!(s, Signal::SIGKILL | Signal::SIGSTOP)) {
        // SAFETY: SIG_DFL installs no handler, so no Rust code can run in
        // signal context as a result of this call.
        unsafe { sigaction(signal, &default) }?;
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// Puts SIGPIPE back to its default action: a command that only prints
/// then ends at a write to a closed pipe (`strata images | head -1`) as
/// docker's CLI does, where Rust's ignored SIGPIPE made every print a
/// panic with a backtrace.
pub fn die_on_closed_pipe() -> nix::Result<()> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL installs no handler, so no Rust code can run in
    // signal context as a result of this call.
    unsafe { sigaction(Signal::SIGPIPE, &default) }.map(drop)
}

/// Installs `program`, a classic BPF seccomp filter as libseccomp exports
/// it (8-byte `struct sock_filter`s in host order), on this process.
/// Needs no_new_privs or CAP_SYS_ADMIN in the process's user namespace.
pub fn load_seccomp_program(program: &[u8]) -> io::Result<()> {
    let instructions: Vec<libc::sock_filter> = program
        .chunks_exact(8)
        .map(|bytes| libc::sock_filter {
            code: u16::from_ne_bytes([bytes[0], bytes[1]]),
            jt: bytes[2],
            jf: bytes[3],
            k: u32::from_ne_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        })
        .collect();
    let len = u16::try_from(instructions.len())
        .map_err(|_| io::Error::other("seccomp program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: instructions.as_ptr().cast_mut(),
    };
    // SAFETY: PR_SET_SECCOMP reads `len` instructions through `fprog`,
    // which points into `instructions`, alive and unchanged until the call
    // returns; the kernel copies the program and keeps no pointer to it.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// _exit(2): ends the process at once, without exit handlers, C++ static
/// destructors or Rust destructors: a forked child (the handlers and
/// buffers it inherited belong to the parent; a C++ library's destructors
/// must not run twice), and `main` at its end (see there).
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit takes an integer and never returns; skipping atexit
    // handlers is its purpose, and no caller depends on them.
    unsafe { libc::_exit(code) }
}

/// bpf(2) commands and constants (linux/bpf.h) for the device filter.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Other programs attached above or below keep running: each may refuse.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The leading fields of `union bpf_attr` that BPF_PROG_LOAD reads (the
/// kernel takes a shorter attr as long as what it leaves out is zero).
#[repr(C)]
struct BpfProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// The fields of `union bpf_attr` that BPF_PROG_ATTACH reads.
#[repr(C)]
struct BpfProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads `program` (`struct bpf_insn`s, 8 bytes each) as a cgroup device
/// program and attaches it to the cgroup v2 directory `cgroup`. The
/// attachment lasts as long as the cgroup; our descriptor of the program
/// is closed on return.
pub fn attach_device_filter(cgroup: &impl AsFd, program: &[[u8; 8]]) -> io::Result<()> {
    let license = b"Apache-2.0\0";
    let load = BpfProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(program.len()).map_err(io::Error::other)?,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
    };
    // SAFETY: BPF_PROG_LOAD reads `load` (valid, of the size given) and,
    // through it, `insn_cnt` 8-byte instructions at `program` and the
    // NUL-terminated `license`, all of which outlive the call; with
    // log_level 0 it writes nothing to our memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &load as *const BpfProgLoad,
            std::mem::size_of::<BpfProgLoad>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: the kernel just made `fd` for us and nothing else owns it.
    let prog = unsafe { OwnedFd::from_raw_fd(fd) };
    let attach = BpfProgAttach {
        target_fd: u32::try_from(cgroup.as_fd().as_raw_fd()).map_err(io::Error::other)?,
        attach_bpf_fd: u32::try_from(prog.as_raw_fd()).map_err(io::Error::other)?,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: BPF_PROG_ATTACH reads `attach` (valid, of the size given)
    // and takes its own reference to the program; both fds are open.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const BpfProgAttach,
            std::mem::size_of::<BpfProgAttach>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Has `command`'s process killed (SIGKILL) when the thread that spawns it
/// exits, and refuses to start it if that thread is already gone: a
/// helper such as pasta must not outlive the container monitor that
/// started it, even when the monitor is killed.
pub fn kill_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec; it only
    // calls prctl and getppid, which are async-signal-safe, and builds its
    // errors from raw errno values, allocating nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    };
}

/// mount_setattr(2) with AT_RECURSIVE: sets `attrs` (MOUNT_ATTR_RDONLY,
/// _NOSUID...) on the mount tree `tree` (from open_tree) and every mount
/// below it (Linux 5.12+; ENOSYS before).
pub fn set_mount_attrs_recursively(tree: BorrowedFd<'_>, attrs: u64) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a NUL-terminated empty string and `attr` a
    // mount_attr whose size is passed with it; both outlive the call,
    // which only reads them.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    match ret {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// One malloc arena for the whole process, for a process about to serve
/// a FUSE mount: its threads (one per io_uring queue, the device's, the
/// big-read workers) each took an arena of their own, so what a walk
/// keeps was spread over several, and a walk of 100,000 files peaked at
/// 87 MB or 103 MB by which threads served it (83 MB every time with
/// one). Their allocations are small and mostly from the thread cache.
pub fn one_malloc_arena() {
    // SAFETY: mallopt sets a parameter of the allocator and touches no
    // memory of ours; glibc takes its own lock for it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Blanks this process's arguments after the program's name where
/// `/proc/PID/cmdline` (and so `ps`) shows them, as setproctitle does: the
/// kernel shows whatever the argument area holds. For the monitor a
/// `run -d` leaves behind, which was forked from the command and kept its
/// `-e SECRET=...` in view of every user for as long as the container ran
/// (docker's client exits, and its daemon's processes carry no `-e`).
/// Found by a review as an attacker. Nothing reads the arguments again:
/// they were parsed when the command began.
pub fn hide_arguments() {
    let Some((start, end)) = memory_area(48) else {
        return;
    };
    // SAFETY: [start, end) is this process's argument area (the kernel's
    // arg_start and arg_end), writable memory the process owns, which no
    // reference of ours points into: the arguments were copied out at
    // the start. Bytes are only set to zero, within the area.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        let first = area
            .iter()
            .position(|&b| b == 0)
            .map_or(area.len(), |i| i + 1);
        area[first..].fill(0);
    }
}

/// Blanks this process's environment where `/proc/PID/environ` shows it,
/// for a process that reads its environment no more and stays strata's
/// binary where a container may look: `--init`'s pid 1, whose environment
/// was the whole of the caller's (a container given CAP_SYS_PTRACE read
/// it, found by a review).
pub fn hide_environment() {
    let Some((start, end)) = memory_area(50) else {
        return;
    };
    // SAFETY: [start, end) is this process's environment area (the
    // kernel's env_start and env_end), writable memory the process owns;
    // the callers read no variable after this (libc's `environ` points
    // into it, and would find empty strings). Bytes are only set to zero.
    unsafe {
        std::slice::from_raw_parts_mut(start as *mut u8, end - start).fill(0);
    }
}

/// The bounds of a memory area `/proc/self/stat` gives as fields `first`
/// and `first + 1`: the arguments' (48) or the environment's (50).
fn memory_area(first: usize) -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name's closing parenthesis come field 3 onward.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<usize>().ok();
    let (start, end) = (field(first)?, field(first + 1)?);
    (start < end).then_some((start, end))
}
