//! docker's default seccomp profile (moby's profiles/seccomp), as data:
//! everything not allowed fails with EPERM. Allowed are the syscalls an
//! ordinary program uses; left out are those that reach past the
//! container (mount, the namespace calls, keyctl, bpf, module loading,
//! the clock, reboot...), each given back by the capability that would
//! make it legitimate. clone may not make namespaces without
//! CAP_SYS_ADMIN, and clone3, whose flags a filter cannot read, fails with
//! ENOSYS so that libcs fall back to clone.

use super::profile::{ArchMap, Arg, Filter, Profile, Rule};

/// What every container may call.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Capability-gated groups: the syscalls a capability makes legitimate.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Architecture-specific groups: (docker's arch names, syscalls).
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// Before 4.8 a seccomp filter could be bypassed with ptrace.
const FROM_KERNEL_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// personality(2) values that change nothing dangerous: PER_LINUX,
/// PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (a query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Address families: sockets of any family but AF_ALG (38) and AF_VSOCK (40).
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

/// The namespace flags of clone(2) that need CAP_SYS_ADMIN: CLONE_NEWNS,
/// NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET and NEWCGROUP.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7e02_0000;

/// (architecture, the ones its processes may also use), libseccomp names.
const ARCH_MAP: &[(&str, &[&str])] = &[
    ("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
    (
        "SCMP_ARCH_MIPS64",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"],
    ),
    (
        "SCMP_ARCH_MIPS64N32",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"],
    ),
    (
        "SCMP_ARCH_MIPSEL64",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
    ),
    (
        "SCMP_ARCH_MIPSEL64N32",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"],
    ),
    ("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
    ("SCMP_ARCH_RISCV64", &[]),
    ("SCMP_ARCH_LOONGARCH64", &[]),
];

const ALLOW: &str = "SCMP_ACT_ALLOW";

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

fn allow(syscalls: &[&str]) -> Rule {
    Rule {
        names: names(syscalls),
        action: ALLOW.to_owned(),
        ..Rule::default()
    }
}

fn with_arg(mut rule: Rule, index: u32, op: &str, value: u64, value_two: u64) -> Rule {
    rule.args.push(Arg {
        index,
        value,
        value_two,
        op: op.to_owned(),
    });
    rule
}

/// The profile, in the same form as one read from a JSON file.
pub fn profile() -> Profile {
    let mut rules = vec![allow(ALLOWED)];
    let mut ptrace = allow(FROM_KERNEL_4_8);
    ptrace.includes.min_kernel = Some("4.8".to_owned());
    rules.push(ptrace);
    rules.push(with_arg(allow(&["socket"]), 0, "SCMP_CMP_LT", AF_ALG, 0));
    rules.push(with_arg(
        allow(&["socket"]),
        0,
        "SCMP_CMP_EQ",
        AF_ALG + 1,
        0,
    ));
    rules.push(with_arg(allow(&["socket"]), 0, "SCMP_CMP_GT", AF_VSOCK, 0));
    for persona in PERSONALITIES {
        rules.push(with_arg(
            allow(&["personality"]),
            0,
            "SCMP_CMP_EQ",
            persona,
            0,
        ));
    }
    for (arches, syscalls) in BY_ARCH {
        let mut rule = allow(syscalls);
        rule.includes.arches = names(arches);
        rules.push(rule);
    }
    for (cap, syscalls) in BY_CAPABILITY {
        let mut rule = allow(syscalls);
        rule.includes.caps = vec![(*cap).to_owned()];
        rules.push(rule);
    }
    rules.extend(clone_without_namespaces());
    Profile {
        default_action: "SCMP_ACT_ERRNO".to_owned(),
        default_errno_ret: Some(libc::EPERM as u32),
        architectures: Vec::new(),
        arch_map: ARCH_MAP
            .iter()
            .map(|(arch, subs)| ArchMap {
                architecture: (*arch).to_owned(),
                sub_architectures: Some(names(subs)),
            })
            .collect(),
        syscalls: rules,
    }
}

/// Without CAP_SYS_ADMIN: clone without namespace flags (its flags are
/// the second argument on s390), and clone3 failing with ENOSYS.
fn clone_without_namespaces() -> [Rule; 3] {
    let not_admin = || Filter {
        caps: vec!["CAP_SYS_ADMIN".to_owned()],
        ..Filter::default()
    };
    let s390 = || names(&["s390", "s390x"]);
    let masked = "SCMP_CMP_MASKED_EQ";
    let mut clone = with_arg(allow(&["clone"]), 0, masked, CLONE_NAMESPACE_FLAGS, 0);
    clone.excludes = Filter {
        arches: s390(),
        ..not_admin()
    };
    let mut clone_s390 = with_arg(allow(&["clone"]), 1, masked, CLONE_NAMESPACE_FLAGS, 0);
    clone_s390.includes.arches = s390();
    clone_s390.excludes = not_admin();
    let clone3 = Rule {
        names: names(&["clone3"]),
        action: "SCMP_ACT_ERRNO".to_owned(),
        errno_ret: Some(libc::ENOSYS as u32),
        excludes: not_admin(),
        ..Rule::default()
    };
    [clone, clone_s390, clone3]
}
