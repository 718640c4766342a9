//! The devices a container may use: docker's default allow list, written
//! as v1 `devices.allow` lines or compiled to the eBPF program a v2
//! cgroup runs on every device open and mknod (BPF_PROG_TYPE_CGROUP_DEVICE).
//!
//! Everything not listed is refused: a container may `mknod` any node
//! (`c *:* m`, `b *:* m`, as docker allows) but opening a disk's node gives
//! EPERM.

/// Device types, as the kernel's BPF_DEVCG_DEV_* values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceType {
    Block = 1,
    Char = 2,
}

/// Access bits, as the kernel's BPF_DEVCG_ACC_* values.
pub const MKNOD: u32 = 1;
pub const READ: u32 = 2;
pub const WRITE: u32 = 4;
const RWM: u32 = MKNOD | READ | WRITE;

/// One allowed (type, major, minor, access); `None` is `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: DeviceType,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

const fn char_device(major: u32, minor: Option<u32>) -> DeviceRule {
    DeviceRule {
        kind: DeviceType::Char,
        major: Some(major),
        minor,
        access: RWM,
    }
}

/// docker's defaults (moby's oci/defaults.go with runc's allowed devices):
/// mknod of anything, then null, zero, full, random, urandom, tty,
/// console, ptmx, the pty slaves (136:*) and tun.
pub const DOCKER_DEFAULT_DEVICES: &[DeviceRule] = &[
    DeviceRule {
        kind: DeviceType::Char,
        major: None,
        minor: None,
        access: MKNOD,
    },
    DeviceRule {
        kind: DeviceType::Block,
        major: None,
        minor: None,
        access: MKNOD,
    },
    char_device(1, Some(3)),
    char_device(1, Some(5)),
    char_device(1, Some(7)),
    char_device(1, Some(8)),
    char_device(1, Some(9)),
    char_device(5, Some(0)),
    char_device(5, Some(1)),
    char_device(5, Some(2)),
    char_device(136, None),
    char_device(10, Some(200)),
];

/// What the container may use: docker's defaults and its `--device`s,
/// found on the host now.
pub fn allowed(resources: &layerdb::Resources) -> anyhow::Result<Vec<DeviceRule>> {
    let given = crate::container::host_devices::expand_all(&resources.devices)?;
    Ok((DOCKER_DEFAULT_DEVICES.iter().copied())
        .chain(given.into_iter().map(|device| device.rule))
        .collect())
}

impl DeviceRule {
    /// The line for v1's devices.allow: `c 1:3 rwm`, `b *:* m`.
    pub fn v1_text(&self) -> String {
        let kind = match self.kind {
            DeviceType::Block => 'b',
            DeviceType::Char => 'c',
        };
        let number = |n: Option<u32>| n.map_or("*".to_owned(), |n| n.to_string());
        let access: String = [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
            .iter()
            .filter(|(bit, _)| self.access & bit != 0)
            .map(|(_, letter)| letter)
            .collect();
        format!(
            "{kind} {}:{} {access}",
            number(self.major),
            number(self.minor)
        )
    }
}

/// One eBPF instruction (struct bpf_insn), 8 bytes: opcode, registers
/// (dst in the low nibble), offset, immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    pub fn bytes(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.code;
        out[1] = self.regs;
        out[2..4].copy_from_slice(&self.off.to_ne_bytes());
        out[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        out
    }
}

// The few opcodes the filter needs (linux/bpf.h, linux/bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU64_AND_K: u8 = 0x57; // dst &= imm
const ALU64_RSH_K: u8 = 0x77; // dst >>= imm
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const ALU64_MOV_X: u8 = 0xbf; // dst = src
const JMP_JNE_K: u8 = 0x55; // if dst != imm goto +off
const JMP_JNE_X: u8 = 0x5d; // if dst != src goto +off
const JMP_EXIT: u8 = 0x95; // return r0

const R0: u8 = 0;
const R1: u8 = 1; // the context: struct bpf_cgroup_dev_ctx
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const SCRATCH: u8 = 6;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The filter for `rules`: returns 1 (allow) when a rule covers the
/// device and every access asked for, else 0. The context holds
/// `access_type` (access << 16 | type), `major`, `minor`, each a u32.
pub fn bpf_program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut program = vec![
        insn(LDX_MEM_W, TYPE, R1, 0, 0),
        insn(ALU64_AND_K, TYPE, 0, 0, 0xffff),
        insn(LDX_MEM_W, ACCESS, R1, 0, 0),
        insn(ALU64_RSH_K, ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, MAJOR, R1, 4, 0),
        insn(LDX_MEM_W, MINOR, R1, 8, 0),
    ];
    for rule in rules {
        program.extend(rule_block(rule));
    }
    program.push(insn(ALU64_MOV_K, R0, 0, 0, 0));
    program.push(insn(JMP_EXIT, 0, 0, 0, 0));
    program
}

/// Checks that jump to the next rule on a mismatch, then "allow".
fn rule_block(rule: &DeviceRule) -> Vec<Insn> {
    // Each check is (instructions, index of its jump within them).
    let mut checks: Vec<Vec<Insn>> = vec![vec![insn(JMP_JNE_K, TYPE, 0, 0, rule.kind as i32)]];
    if rule.access & RWM != RWM {
        // Every access asked for must be allowed: (asked & allowed) == asked.
        checks.push(vec![
            insn(ALU64_MOV_X, SCRATCH, ACCESS, 0, 0),
            insn(ALU64_AND_K, SCRATCH, 0, 0, rule.access as i32),
            insn(JMP_JNE_X, SCRATCH, ACCESS, 0, 0),
        ]);
    }
    if let Some(major) = rule.major {
        checks.push(vec![insn(JMP_JNE_K, MAJOR, 0, 0, major as i32)]);
    }
    if let Some(minor) = rule.minor {
        checks.push(vec![insn(JMP_JNE_K, MINOR, 0, 0, minor as i32)]);
    }
    let allow = [insn(ALU64_MOV_K, R0, 0, 0, 1), insn(JMP_EXIT, 0, 0, 0, 0)];
    let length: usize = checks.iter().map(Vec::len).sum::<usize>() + allow.len();
    let mut block = Vec::with_capacity(length);
    for check in checks {
        for instruction in check {
            block.push(instruction);
            let is_jump = matches!(instruction.code, JMP_JNE_K | JMP_JNE_X);
            if is_jump {
                // A jump's offset counts from the instruction after it.
                let after = block.len();
                let last = block.len() - 1;
                block[last].off = i16::try_from(length - after).expect("a short rule block");
            }
        }
    }
    block.extend(allow);
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_are_dockers() {
        let lines: Vec<String> = DOCKER_DEFAULT_DEVICES.iter().map(|r| r.v1_text()).collect();
        assert_eq!(lines[0], "c *:* m");
        assert_eq!(lines[1], "b *:* m");
        assert!(lines.contains(&"c 1:3 rwm".to_owned()));
        assert!(lines.contains(&"c 136:* rwm".to_owned()));
    }

    /// Runs the filter the way the kernel would, for the opcodes it uses.
    fn run(program: &[Insn], kind: DeviceType, access: u32, major: u32, minor: u32) -> u64 {
        let context = [(access << 16) | kind as u32, major, minor];
        let mut regs = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = program[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, R1 as usize);
                    regs[dst] = u64::from(context[i.off as usize / 4]);
                }
                ALU64_AND_K => regs[dst] &= i.imm as u64,
                ALU64_RSH_K => regs[dst] >>= i.imm,
                ALU64_MOV_K => regs[dst] = i.imm as u64,
                ALU64_MOV_X => regs[dst] = regs[src],
                JMP_JNE_K if regs[dst] != i.imm as u64 => pc += i.off as usize,
                JMP_JNE_X if regs[dst] != regs[src] => pc += i.off as usize,
                JMP_JNE_K | JMP_JNE_X => {}
                JMP_EXIT => return regs[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn the_filter_allows_dockers_devices_and_mknod_and_nothing_else() {
        let p = bpf_program(DOCKER_DEFAULT_DEVICES);
        let char_dev = DeviceType::Char;
        assert_eq!(run(&p, char_dev, READ | WRITE, 1, 3), 1, "/dev/null");
        assert_eq!(run(&p, char_dev, READ, 1, 9), 1, "/dev/urandom");
        assert_eq!(run(&p, char_dev, READ | WRITE, 136, 7), 1, "a pty");
        assert_eq!(run(&p, char_dev, MKNOD, 4, 1), 1, "mknod of a char device");
        assert_eq!(
            run(&p, DeviceType::Block, MKNOD, 8, 0),
            1,
            "mknod of a disk"
        );
        assert_eq!(run(&p, DeviceType::Block, READ, 8, 0), 0, "reading a disk");
        assert_eq!(run(&p, DeviceType::Block, READ, 254, 0), 0, "reading vda");
        assert_eq!(run(&p, char_dev, READ | MKNOD, 4, 1), 0, "mknod and read");
        assert_eq!(run(&p, char_dev, WRITE, 1, 1), 0, "/dev/mem");
        assert_eq!(run(&p, char_dev, READ, 10, 229), 0, "/dev/fuse");
    }
}
