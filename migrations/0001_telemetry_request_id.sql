ALTER TABLE `telemetry` ADD `request_id` text;--> statement-breakpoint
CREATE UNIQUE INDEX `telemetry_request_id_idx` ON `telemetry` (`request_id`);