-- Projection: networks (engine/services/networks), Docker's bridge networks and their endpoints.
--
--   networks        one row per network: id (64 hex), unique name, driver (bridge|host|null), the
--                   kernel bridge's name, IPv4 pool (subnet, gateway, ip_range), flags, labels and
--                   options (JSON), builtin = 1 for Docker's predefined bridge/host/none, and last_ip:
--                   the IPAM cursor (addresses are handed out after it, wrapping around).
--   net_addresses   addresses held on a network (never two holders of one address).
--   net_sandboxes   a container's network namespace file (<exec-root>/netns/<container id>).
--   net_endpoints   a container's attachment to a network: its veth (host side), interface name
--                   inside, address, MAC, DNS name and aliases; state attaching|attached|detaching
--                   (the intent/outcome bracket around the kernel work).
--   net_ports       published ports: (proto, host_ip, host_port) -> container address and port.
CREATE TABLE networks (
    id          TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    driver      TEXT    NOT NULL,
    bridge      TEXT    NOT NULL,
    subnet      TEXT    NOT NULL,
    gateway     TEXT    NOT NULL,
    ip_range    TEXT    NOT NULL,
    internal    INTEGER NOT NULL,
    attachable  INTEGER NOT NULL,
    labels      TEXT    NOT NULL,
    options     TEXT    NOT NULL,
    builtin     INTEGER NOT NULL,
    last_ip     TEXT    NOT NULL DEFAULT '',
    created_ns  INTEGER NOT NULL
);

CREATE TABLE net_addresses (
    network_id  TEXT    NOT NULL,
    ip          TEXT    NOT NULL,
    endpoint_id TEXT    NOT NULL,
    PRIMARY KEY (network_id, ip)
);

CREATE TABLE net_sandboxes (
    container_id TEXT   PRIMARY KEY,
    netns        TEXT   NOT NULL,
    created_ns   INTEGER NOT NULL
);

CREATE TABLE net_endpoints (
    id           TEXT    PRIMARY KEY,
    network_id   TEXT    NOT NULL,
    container_id TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    aliases      TEXT    NOT NULL,
    ip           TEXT    NOT NULL,
    mac          TEXT    NOT NULL,
    host_if      TEXT    NOT NULL,
    ifname       TEXT    NOT NULL,
    netns        TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    created_ns   INTEGER NOT NULL,
    UNIQUE (network_id, container_id)
);
CREATE INDEX net_endpoints_container ON net_endpoints(container_id);

CREATE TABLE net_ports (
    proto          TEXT    NOT NULL,
    host_ip        TEXT    NOT NULL,
    host_port      INTEGER NOT NULL,
    container_id   TEXT    NOT NULL,
    container_port INTEGER NOT NULL,
    network_id     TEXT    NOT NULL,
    container_ip   TEXT    NOT NULL,
    PRIMARY KEY (proto, host_ip, host_port)
);
CREATE INDEX net_ports_container ON net_ports(container_id);
