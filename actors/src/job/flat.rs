//! The serialised form of job and step records: flat, the [`Usage`] figures inline where the
//! `usage` field stands.
//!
//! Both records were flat structs before their usage figures were grouped, and two forms rely
//! on that shape: the JSON of `accounting --dry-run --json` and `debug store-jobs` (read by
//! scripts and the end-to-end tests), and the store's format-1 values (postcard: positional, no
//! field names). serde's `flatten` would keep the JSON but makes a map of the record, which
//! postcard cannot write; so the records serialise through [`flat_struct!`] as plain structs.
//! Reading needs nothing special: records are only read back from postcard, which reads a
//! nested struct as its fields in sequence, the very bytes of the flat one.

use super::{JobRecord, StepRecord, Usage};
use serde::ser::{Serialize, SerializeStruct, Serializer};

/// How many fields [`Usage`] adds to a record.
const USAGE_FIELDS: usize = 10;

/// Serialises `$record` (a `$ty`) as one struct: the fields before `usage`, the usage figures,
/// the fields after. The pattern names every field, so a field added to the record and not here
/// does not compile.
macro_rules! flat_struct {
    ($serializer:expr, $record:expr, $ty:ident { $($before:ident),+ ; usage ; $($after:ident),+ }) => {{
        let $ty { $($before,)+ usage, $($after,)+ } = $record;
        let own = [$(stringify!($before),)+ $(stringify!($after),)+].len();
        let mut out = $serializer.serialize_struct(stringify!($ty), own + USAGE_FIELDS)?;
        $(out.serialize_field(stringify!($before), $before)?;)+
        usage_fields(usage, &mut out)?;
        $(out.serialize_field(stringify!($after), $after)?;)+
        out.end()
    }};
}

fn usage_fields<S: SerializeStruct>(usage: &Usage, out: &mut S) -> Result<(), S::Error> {
    let Usage {
        total_cpu_ms,
        user_cpu_ms,
        system_cpu_ms,
        max_rss_bytes,
        max_rss_node,
        max_rss_task,
        ave_rss_bytes,
        max_vmsize_bytes,
        max_disk_read_bytes,
        max_disk_write_bytes,
        // Derived figures: not part of the record's serialised form (format-1 values are
        // positional, and the store keeps a job's figures in its own encoding).
        mem_used_bytes: _,
        mem_node_peak_bytes: _,
    } = usage;
    out.serialize_field("total_cpu_ms", total_cpu_ms)?;
    out.serialize_field("user_cpu_ms", user_cpu_ms)?;
    out.serialize_field("system_cpu_ms", system_cpu_ms)?;
    out.serialize_field("max_rss_bytes", max_rss_bytes)?;
    out.serialize_field("max_rss_node", max_rss_node)?;
    out.serialize_field("max_rss_task", max_rss_task)?;
    out.serialize_field("ave_rss_bytes", ave_rss_bytes)?;
    out.serialize_field("max_vmsize_bytes", max_vmsize_bytes)?;
    out.serialize_field("max_disk_read_bytes", max_disk_read_bytes)?;
    out.serialize_field("max_disk_write_bytes", max_disk_write_bytes)
}

impl Serialize for JobRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        flat_struct!(serializer, self, JobRecord {
            id, display_id, array_job_id, array_task_id, het_job_id, het_offset, name, user, uid, account,
            partition, qos, state, state_detail, exit_code, exit_signal, submit_at, eligible_at, start_at, end_at,
            time_limit_secs, elapsed_secs, node_list, node_count, alloc_cpus, req_mem, req_mem_bytes, alloc_tres,
            req_tres;
            usage;
            submit_line, work_dir, imported_at
        })
    }
}

impl Serialize for StepRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        flat_struct!(serializer, self, StepRecord {
            job, step, name, state, exit_code, exit_signal, start_at, end_at, elapsed_secs, node_list, node_count,
            task_count, alloc_cpus;
            usage;
            tres_usage_in_tot, tres_usage_in_max, submit_line
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobId, StepId, Tres};

    /// The top-level keys of a JSON object, in the order written.
    fn keys(json: &str) -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let mut keys: Vec<(usize, String)> =
            value.as_object().unwrap().keys().map(|k| (json.find(&format!("\"{k}\":")).unwrap(), k.clone())).collect();
        keys.sort();
        keys.into_iter().map(|(_, k)| k).collect()
    }

    fn usage() -> Usage {
        Usage {
            total_cpu_ms: 1,
            user_cpu_ms: 2,
            system_cpu_ms: 3,
            max_rss_bytes: Some(4),
            max_rss_node: "n5".into(),
            max_rss_task: Some(6),
            ave_rss_bytes: Some(7),
            max_vmsize_bytes: None,
            max_disk_read_bytes: Some(9),
            max_disk_write_bytes: Some(10),
            ..Usage::default()
        }
    }

    #[test]
    fn a_job_serialises_with_its_fields_in_the_order_of_the_flat_record() {
        let job = JobRecord { usage: usage(), ..JobRecord::finished(7, "ann", 100, 20) };
        let json = serde_json::to_string(&job).unwrap();
        let want = "id display_id array_job_id array_task_id het_job_id het_offset name user uid account partition \
                    qos state state_detail exit_code exit_signal submit_at eligible_at start_at end_at time_limit_secs \
                    elapsed_secs node_list node_count alloc_cpus req_mem req_mem_bytes alloc_tres req_tres \
                    total_cpu_ms user_cpu_ms system_cpu_ms max_rss_bytes max_rss_node max_rss_task ave_rss_bytes \
                    max_vmsize_bytes max_disk_read_bytes max_disk_write_bytes submit_line work_dir imported_at";
        assert_eq!(keys(&json).join(" "), want);
        assert!(json.contains("\"max_rss_node\":\"n5\",\"max_rss_task\":6,"), "{json}");
        let back: JobRecord = postcard::from_bytes(&postcard::to_allocvec(&job).unwrap()).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn a_step_serialises_with_its_fields_in_the_order_of_the_flat_record() {
        let step = StepRecord {
            job: JobId(7),
            step: StepId::BATCH,
            name: "batch".into(),
            state: "COMPLETED".into(),
            exit_code: 0,
            exit_signal: 0,
            start_at: Some(100),
            end_at: Some(120),
            elapsed_secs: 20,
            node_list: "n5".into(),
            node_count: 1,
            task_count: 1,
            alloc_cpus: 2,
            usage: usage(),
            tres_usage_in_tot: Tres(vec![("cpu".into(), 1)]),
            tres_usage_in_max: Tres::default(),
            submit_line: String::new(),
        };
        let json = serde_json::to_string(&step).unwrap();
        let want = "job step name state exit_code exit_signal start_at end_at elapsed_secs node_list node_count \
                    task_count alloc_cpus total_cpu_ms user_cpu_ms system_cpu_ms max_rss_bytes max_rss_node \
                    max_rss_task ave_rss_bytes max_vmsize_bytes max_disk_read_bytes max_disk_write_bytes \
                    tres_usage_in_tot tres_usage_in_max submit_line";
        assert_eq!(keys(&json).join(" "), want);
        let back: StepRecord = postcard::from_bytes(&postcard::to_allocvec(&step).unwrap()).unwrap();
        assert_eq!(back, step);
    }
}
