//! The threads that run the group's decisions against the world: the standby's follower
//! (sockets to its primary, records into the pipeline), the coordinator (etcd's leases and
//! keys), and the hooks through which the replicator's primary side reaches the node.

pub mod coordination;
pub mod follower;
pub mod primary_hooks;
