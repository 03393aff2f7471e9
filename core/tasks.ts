/** The tasks fairspec measures: languages and domains, each with its own corpus. */
export const TASKS = ["en", "de", "fr", "es", "ru", "ja", "zh", "ar", "code-py", "code-c", "math"] as const;
export type TaskId = (typeof TASKS)[number];

export const isTaskId = (s: string): s is TaskId => (TASKS as readonly string[]).includes(s);
