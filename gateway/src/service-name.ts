// Its own module so instrument.ts can name the service without loading anything else first.
export const SERVICE_NAME = "gateway";
