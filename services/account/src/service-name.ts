export const SERVICE_NAME = "account";
