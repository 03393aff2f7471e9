CREATE TABLE `activations` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`run_id` text NOT NULL,
	`activated_at` text NOT NULL,
	`forced` integer DEFAULT false NOT NULL,
	`reason` text NOT NULL,
	FOREIGN KEY (`run_id`) REFERENCES `calibration_runs`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `activations_run_id_idx` ON `activations` (`run_id`);--> statement-breakpoint
CREATE TABLE `api_keys` (
	`id` text PRIMARY KEY NOT NULL,
	`tenant_id` text NOT NULL,
	`key_hash` text NOT NULL,
	`prefix` text NOT NULL,
	`created_at` text NOT NULL,
	`revoked_at` text,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_key_hash_unique` ON `api_keys` (`key_hash`);--> statement-breakpoint
CREATE INDEX `api_keys_tenant_id_idx` ON `api_keys` (`tenant_id`);--> statement-breakpoint
CREATE TABLE `calibration_checkpoints` (
	`config_hash` text NOT NULL,
	`key` text NOT NULL,
	`value` text NOT NULL,
	`created_at` text NOT NULL,
	PRIMARY KEY(`config_hash`, `key`)
);
--> statement-breakpoint
CREATE TABLE `calibration_lease` (
	`name` text PRIMARY KEY NOT NULL,
	`holder` text NOT NULL,
	`expires_at` text NOT NULL
);
--> statement-breakpoint
CREATE TABLE `calibration_runs` (
	`id` text PRIMARY KEY NOT NULL,
	`config_hash` text NOT NULL,
	`hardware` text NOT NULL,
	`status` text DEFAULT 'running' NOT NULL,
	`started_at` text NOT NULL,
	`finished_at` text,
	`summary` text,
	`created_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `calibration_runs_config_hash_idx` ON `calibration_runs` (`config_hash`);--> statement-breakpoint
CREATE INDEX `calibration_runs_created_at_idx` ON `calibration_runs` (`created_at`);--> statement-breakpoint
CREATE TABLE `pools` (
	`run_id` text NOT NULL,
	`pool_id` text NOT NULL,
	`kind` text NOT NULL,
	`drafter` text,
	`gamma` integer NOT NULL,
	`proposal_temperature` real,
	`urls` text NOT NULL,
	PRIMARY KEY(`run_id`, `pool_id`),
	FOREIGN KEY (`run_id`) REFERENCES `calibration_runs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `run_policies` (
	`run_id` text NOT NULL,
	`policy_id` text NOT NULL,
	`policy` text NOT NULL,
	`max_pools` integer NOT NULL,
	PRIMARY KEY(`run_id`, `policy_id`),
	FOREIGN KEY (`run_id`) REFERENCES `calibration_runs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `task_measurements` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`run_id` text NOT NULL,
	`task` text NOT NULL,
	`drafter` text NOT NULL,
	`mitigation` text NOT NULL,
	`target_temperature` real NOT NULL,
	`proposal_temperature` real NOT NULL,
	`alpha` real NOT NULL,
	`alpha_lo` real NOT NULL,
	`alpha_hi` real NOT NULL,
	`cross_entropy` real NOT NULL,
	`cross_entropy_lo` real NOT NULL,
	`cross_entropy_hi` real NOT NULL,
	`kl` real NOT NULL,
	`kl_lo` real NOT NULL,
	`kl_hi` real NOT NULL,
	`mean_tv` real NOT NULL,
	`pinsker_bound` real NOT NULL,
	`bound_holds` integer NOT NULL,
	`prompts` integer NOT NULL,
	`positions` integer NOT NULL,
	FOREIGN KEY (`run_id`) REFERENCES `calibration_runs`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `task_measurements_key_idx` ON `task_measurements` (`run_id`,`task`,`drafter`,`mitigation`,`target_temperature`,`proposal_temperature`);--> statement-breakpoint
CREATE TABLE `task_params` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`run_id` text NOT NULL,
	`policy_id` text NOT NULL,
	`task` text NOT NULL,
	`target_temperature` real NOT NULL,
	`pool_id` text NOT NULL,
	`drafter` text,
	`gamma` integer NOT NULL,
	`proposal_temperature` real,
	`predicted_speedup` real NOT NULL,
	`predicted_speedup_lo` real NOT NULL,
	`predicted_speedup_hi` real NOT NULL,
	`measured_speedup` real,
	`measured_speedup_lo` real,
	`measured_speedup_hi` real,
	`ms_per_char` real,
	FOREIGN KEY (`run_id`) REFERENCES `calibration_runs`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`run_id`,`policy_id`) REFERENCES `run_policies`(`run_id`,`policy_id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`run_id`,`pool_id`) REFERENCES `pools`(`run_id`,`pool_id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `task_params_run_policy_task_idx` ON `task_params` (`run_id`,`policy_id`,`task`,`target_temperature`);--> statement-breakpoint
CREATE TABLE `telemetry` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`tenant_id` text NOT NULL,
	`task` text NOT NULL,
	`pool_id` text NOT NULL,
	`drafted` integer NOT NULL,
	`accepted` integer NOT NULL,
	`completion_tokens` integer NOT NULL,
	`latency_ms` real NOT NULL,
	`created_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `telemetry_tenant_created_idx` ON `telemetry` (`tenant_id`,`created_at`);--> statement-breakpoint
CREATE TABLE `tenant_policies` (
	`tenant_id` text PRIMARY KEY NOT NULL,
	`policy` text NOT NULL,
	`updated_at` text NOT NULL,
	FOREIGN KEY (`tenant_id`) REFERENCES `tenants`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE TABLE `tenants` (
	`id` text PRIMARY KEY NOT NULL,
	`name` text NOT NULL,
	`default_task` text NOT NULL,
	`created_at` text NOT NULL
);
