//! What `scontrol -o show node <name>` says of one node: its address, host name and memory —
//! what the server needs to check that a report comes from the node it names, and how much
//! memory a sample there may claim.
//!
//! The one-line form is `Key=value` pairs separated by spaces. Some values hold spaces (`OS=`,
//! from the node's kernel; an admin's `Reason=`, printed last), and none of them comes from a
//! job's user. Each key read here is taken at its first occurrence, at the start of a token, so
//! text in a later free-text field cannot replace it.

use super::{SlurmError, SlurmRunner};

/// The fields of one node read here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShownNode {
    pub name: String,
    /// `NodeAddr`: where slurmctld reaches slurmd (a name or an address).
    pub addr: String,
    /// `NodeHostName`.
    pub hostname: String,
    /// `RealMemory`, MiB (SLURM's "MB").
    pub real_memory_mib: Option<u64>,
}

/// Parses the one-line output for one node; `None` when it names no node.
pub fn parse_show_node(text: &str) -> Option<ShownNode> {
    let line = text.lines().find(|l| l.starts_with("NodeName="))?;
    let field = |key: &str| line.split(' ').find_map(|t| t.strip_prefix(key)?.strip_prefix('=')).map(str::to_string);
    Some(ShownNode {
        name: field("NodeName")?,
        addr: field("NodeAddr").unwrap_or_default(),
        hostname: field("NodeHostName").unwrap_or_default(),
        real_memory_mib: field("RealMemory").and_then(|v| v.parse().ok()),
    })
}

/// Asks slurmctld about `node`: `Ok(None)` when SLURM does not know it, `Err` when it could not
/// answer. The caller checks the name's shape first (it is passed as one argument).
pub async fn show_node(slurm: &SlurmRunner, node: &str) -> Result<Option<ShownNode>, SlurmError> {
    match slurm.run("scontrol", &["-o".into(), "show".into(), "node".into(), node.to_string()]).await {
        Ok(text) => Ok(parse_show_node(&text).filter(|n| n.name == node)),
        Err(SlurmError::Failed { stderr, .. }) if stderr.contains("not found") => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from the dev cluster (Slurm 22.05.8).
    const N1: &str = "NodeName=n1 Arch=x86_64 CoresPerSocket=2  CPUAlloc=0 CPUEfctv=2 CPUTot=2 CPULoad=1.61 AvailableFeatures=(null) ActiveFeatures=(null) Gres=(null) NodeAddr=127.0.0.1 NodeHostName=vm Port=17001 Version=22.05.8 OS=Linux 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=7793 AllocMem=0 FreeMem=487 Sockets=1 Boards=1 State=IDLE ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A Partitions=debug  BootTime=2026-12-01T21:42:16 SlurmdStartTime=2026-12-02T00:41:45 LastBusyTime=2026-12-02T00:50:38 CfgTRES=cpu=2,mem=7793M,billing=2 AllocTRES= CapWatts=n/a CurrentWatts=0 AveWatts=0 ExtSensorsJoules=n/s ExtSensorsWatts=0 ExtSensorsTemp=n/s\n";

    #[test]
    fn a_recorded_node_gives_address_host_and_memory() {
        let n = parse_show_node(N1).unwrap();
        assert_eq!(
            n,
            ShownNode {
                name: "n1".into(),
                addr: "127.0.0.1".into(),
                hostname: "vm".into(),
                real_memory_mib: Some(7793)
            }
        );
        assert_eq!(parse_show_node("Node zz not found\n"), None);
    }

    #[test]
    fn free_text_cannot_pose_as_a_field() {
        // An admin's reason, printed last, cannot replace a field printed before it.
        let with_reason = format!("{} Reason=maintenance NodeAddr=10.6.6.6 RealMemory=1 [root@2026-12-02]", N1.trim());
        let n = parse_show_node(&with_reason).unwrap();
        assert_eq!((n.addr.as_str(), n.real_memory_mib), ("127.0.0.1", Some(7793)));
    }
}
