//! The server's connection budget: how many sessions PostgreSQL lets this role open
//! (`max_connections`, less the slots reserved for superusers and, from PostgreSQL 16, for
//! `pg_use_reserved_connections`), how many other sessions hold now, and what that means
//! for `max_open` across `--instances` copies of the application.
//!
//! Every instance has its own pool, so the server sees `instances x max_open` at the peak.
//! When that is more than the server allows, the fix is a smaller `max_open` per instance,
//! or a pooler (PgBouncer) that multiplexes the instances' connections onto fewer server
//! sessions.

/// One query for everything the budget needs, on PostgreSQL 10 and later
/// (`reserved_connections` is PostgreSQL 16's and reads as 0 before).
pub const QUERY: &str = "SELECT current_setting('max_connections')::int4, \
     current_setting('superuser_reserved_connections')::int4, \
     coalesce(current_setting('reserved_connections', true), '0')::int4, \
     coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false), \
     EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'pg_use_reserved_connections' \
             AND pg_has_role(current_user, r.oid, 'member')), \
     (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int4";

/// What the server allows, read with [`QUERY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `max_connections`.
    pub max_connections: u32,
    /// `superuser_reserved_connections`: slots only superusers may take.
    pub superuser_reserved: u32,
    /// `reserved_connections` (PostgreSQL 16; 0 before): slots only superusers and members of
    /// `pg_use_reserved_connections` may take.
    pub reserved: u32,
    /// The connecting role is a superuser (it may take every slot).
    pub superuser: bool,
    /// The connecting role is a member of `pg_use_reserved_connections`.
    pub uses_reserved: bool,
    /// Client sessions open when it was read, pool-lab's own included.
    pub sessions: u32,
}

impl Budget {
    /// The slots this role may take in all.
    pub fn allowed(&self) -> u32 {
        if self.superuser {
            return self.max_connections;
        }
        let reserved = self.superuser_reserved + if self.uses_reserved { 0 } else { self.reserved };
        self.max_connections.saturating_sub(reserved)
    }

    /// The slots free for the application: [`allowed`](Budget::allowed) less the sessions
    /// others hold now (pool-lab's own, which closes before the sweep, not counted).
    pub fn free(&self) -> u32 {
        self.allowed()
            .saturating_sub(self.sessions.saturating_sub(1))
    }

    /// The budget in words: `max_connections 100, less 3 reserved for superusers: 97 for
    /// this role; 4 in use by other sessions, so 93 free`.
    pub fn describe(&self) -> String {
        let mut text = format!("max_connections {}", self.max_connections);
        if self.superuser {
            text.push_str(" (this role is a superuser and may take every slot)");
        } else {
            if self.superuser_reserved > 0 {
                text.push_str(&format!(
                    ", less {} reserved for superusers",
                    self.superuser_reserved
                ));
            }
            if self.reserved > 0 && !self.uses_reserved {
                text.push_str(&format!(", less {} reserved_connections", self.reserved));
            }
            text.push_str(&format!(": {} for this role", self.allowed()));
        }
        let others = self.sessions.saturating_sub(1);
        text.push_str(&format!(
            "; {others} in use by other sessions, so {} free",
            self.free()
        ));
        text
    }

    /// A warning when `instances` pools of `per_instance` connections each (what `max_open`
    /// allows at the peak) need more than the server has free, with what fits; `None` when
    /// they fit. `sweep_peak` is what pool-lab's own sweep opens at most (one instance).
    pub fn check(&self, instances: u32, per_instance: usize, sweep_peak: usize) -> Option<String> {
        let need = instances as u64 * per_instance as u64;
        if need <= u64::from(self.free()) {
            return None;
        }
        let mut text = format!(
            "warning: {instances} instance{} x max_open {per_instance} = {need} connections at \
             the peak, but the server has {}: {}.",
            if instances == 1 { "" } else { "s" },
            self.free(),
            self.describe()
        );
        if sweep_peak as u64 > u64::from(self.free()) {
            text.push_str(&format!(
                "\nThis sweep alone (one instance) may open {sweep_peak}: calls beyond {} \
                 will be refused.",
                self.free()
            ));
        }
        text.push('\n');
        text.push_str(&self.hint(instances, per_instance));
        Some(text)
    }

    /// What to do when the server is too small for the pools: the `max_open` per instance
    /// that fits, and PgBouncer's settings to keep `max_open` as it is.
    pub fn hint(&self, instances: u32, per_instance: usize) -> String {
        let free = self.free();
        let fits = free / instances.max(1);
        let smaller = if fits == 0 {
            format!(
                "- {instances} instances cannot have a connection each from {free} free slots: \
                 use a pooler, or raise max_connections."
            )
        } else {
            format!(
                "- Set max_open {fits} per instance ({instances} x {fits} = {} of {free} free).",
                instances * fits
            )
        };
        format!(
            "{smaller}\n\
             - Or keep max_open {per_instance} and put PgBouncer between the instances and the \
             server (pool_mode = transaction): max_client_conn = {} or more for the \
             instances, and default_pool_size = {free} or less (the server sessions it opens \
             per database and user; less when other users share the server).",
            instances as u64 * per_instance as u64
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: Budget = Budget {
        max_connections: 100,
        superuser_reserved: 3,
        reserved: 0,
        superuser: false,
        uses_reserved: false,
        sessions: 5,
    };

    #[test]
    fn the_free_slots_leave_out_reserved_ones_and_other_sessions() {
        assert_eq!((PG15.allowed(), PG15.free()), (97, 93));
        let su = Budget {
            superuser: true,
            ..PG15
        };
        assert_eq!((su.allowed(), su.free()), (100, 96));
        let pg16 = Budget {
            reserved: 10,
            ..PG15
        };
        assert_eq!(pg16.allowed(), 87);
        let member = Budget {
            uses_reserved: true,
            ..pg16
        };
        assert_eq!(member.allowed(), 97);
    }

    #[test]
    fn four_instances_of_200_get_a_warning_with_the_numbers_that_fit() {
        assert_eq!(PG15.check(4, 23, 23), None, "4 x 23 = 92 of 93 fits");
        let w = PG15.check(4, 200, 200).expect("a warning");
        for part in [
            "4 instances x max_open 200 = 800",
            "max_open 23 per instance",
            "PgBouncer",
            "max_client_conn = 800",
            "default_pool_size = 93",
            "This sweep alone",
        ] {
            assert!(w.contains(part), "{part}: {w}");
        }
    }
}
