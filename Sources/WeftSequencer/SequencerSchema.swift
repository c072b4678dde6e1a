import WeftStore

/// The sequencer's tables in the domain's shared PostgreSQL database
/// (docs/sequencer.md §2). Every sequencer node of the domain uses the same
/// tables; the writers' watermarks keep their events in one order.
enum SequencerSchema {
    static let migrator = Migrator(component: "sequencer", migrations: [
        Migration(1, "members, writers, events, deliveries", """
            -- Members known to the sequencer: small ids for the delivery index.
            CREATE TABLE sequencer_members (
                id            serial  PRIMARY KEY,
                member        text    NOT NULL UNIQUE,
                registered_ts bigint  NOT NULL,
                enabled       boolean NOT NULL DEFAULT true,
                acknowledged_ts bigint
            );
            -- One row per sequencer node that writes: its watermark W promises that all its
            -- events with ts <= W are committed and that it will never write one at or below W.
            CREATE TABLE sequencer_writers (
                node         smallint    PRIMARY KEY,
                watermark    bigint      NOT NULL,
                online       boolean     NOT NULL,
                heartbeat_at timestamptz NOT NULL DEFAULT now()
            );
            -- Each event once, with all its recipients (delivery consistency). ts is unique across
            -- writers: a writer's timestamps are congruent to its node number modulo 32.
            CREATE TABLE sequencer_events (
                ts          bigint   PRIMARY KEY,
                node        smallint NOT NULL,
                sender      integer  NOT NULL REFERENCES sequencer_members (id),
                message_id  text     NOT NULL,
                -- 1: deliver (batch set), 2: deliver error (error fields set)
                kind        smallint NOT NULL,
                batch       bytea,
                traceparent text     NOT NULL DEFAULT '',
                recipients  integer[] NOT NULL,
                error_code  integer,
                error_id    text,
                error_message text
            );
            -- The delivery index: who receives which event. The sender of a deliver always has a
            -- row too (its receipt).
            CREATE TABLE sequencer_deliveries (
                member integer NOT NULL,
                ts     bigint  NOT NULL,
                PRIMARY KEY (member, ts)
            );
            -- Known (member, counter, ts) points, so a subscription from any counter starts
            -- without counting the member's whole history.
            CREATE TABLE sequencer_counter_checkpoints (
                member  integer NOT NULL,
                counter bigint  NOT NULL,
                ts      bigint  NOT NULL,
                PRIMARY KEY (member, counter)
            );
            -- Message ids seen per sender until their max sequencing time: a replayed submission
            -- is refused.
            CREATE TABLE sequencer_submissions (
                sender     integer NOT NULL,
                message_id text    NOT NULL,
                expires_ts bigint  NOT NULL,
                PRIMARY KEY (sender, message_id)
            );
            """),
        Migration(2, "prune points", """
            -- Per member, the last counter removed by pruning (and its timestamp): a subscription
            -- from a counter at or below it is refused with the first counter still available.
            CREATE TABLE sequencer_prune_points (
                member  integer PRIMARY KEY,
                counter bigint  NOT NULL,
                ts      bigint  NOT NULL
            );
            """),
        Migration(3, "topology snapshot sent", """
            -- Whether the member was sent the topology history as its first event (docs/sequencer.md
            -- §4). A cache: the send itself is deduplicated by its message id in
            -- sequencer_submissions, in the transaction that stores it, so it happens once per member
            -- even when two nodes or a restart try again.
            ALTER TABLE sequencer_members ADD COLUMN topology_snapshot_sent boolean NOT NULL DEFAULT false;
            """),
        Migration(4, "signed blocks", """
            -- Each group commit of a node is a block whose events' deliveries (one leaf per member
            -- and event) the node signed at once (docs/sequencer.md §5). Kept so that a member
            -- replaying from a copy of this database can verify every event.
            CREATE TABLE sequencer_blocks (
                node      smallint NOT NULL,
                -- The group commit's watermark: above every event of the block.
                block_ts  bigint   NOT NULL,
                -- The leaf hashes, 32 bytes each, in (timestamp, member) order.
                leaves    bytea    NOT NULL,
                -- A serialized weft.v1.Signature over the leaf count and the root.
                signature bytea    NOT NULL,
                PRIMARY KEY (node, block_ts)
            );
            -- Hashes do not compress: spare PostgreSQL the attempt.
            ALTER TABLE sequencer_blocks ALTER COLUMN leaves SET STORAGE EXTERNAL;
            -- The event's block (with its node); null for events stored before blocks were signed,
            -- which are signed one by one when served.
            ALTER TABLE sequencer_events ADD COLUMN block_ts bigint;
            -- The position of the event's first leaf in its block; its recipients' and sender's
            -- leaves follow in member id order.
            ALTER TABLE sequencer_events ADD COLUMN leaf_offset integer;
            """),
        Migration(5, "batches of a few KiB stay in the row", """
            -- A confirmation request's batch (encrypted views) is 2-3 KiB: over PostgreSQL's
            -- default 2 KiB threshold, every insert tried to compress it (encrypted bytes do not
            -- compress) and then moved it to the TOAST table (a second heap and index insert),
            -- and every read fetched it back from there. Rows up to a page stay whole; a larger
            -- batch still goes out of line, uncompressed.
            ALTER TABLE sequencer_events SET (toast_tuple_target = 8160);
            ALTER TABLE sequencer_events ALTER COLUMN batch SET STORAGE EXTERNAL;
            """),
        Migration(6, "writer incarnations", """
            -- Counts the processes that have been a node's writer: each one that comes online
            -- takes the next, and its watermark updates require it, so a process whose node
            -- number another process took over commits nothing more (docs/sequencer.md §3.6).
            ALTER TABLE sequencer_writers ADD COLUMN incarnation bigint NOT NULL DEFAULT 0;
            """),
        Migration(7, "prune points by time", """
            -- The shared reader reads the prune points past each range it reads (one row per
            -- pruned member, nearly all before the range): by time, not by scanning them all.
            CREATE INDEX sequencer_prune_points_by_ts ON sequencer_prune_points (ts);
            """),
    ])
}
