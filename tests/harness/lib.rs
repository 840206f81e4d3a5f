//! The lab harness: network namespaces, real daemons, real clients and servers.
