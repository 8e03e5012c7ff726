import { useEffect, useState } from 'react';
import { getApiKey, onApiKeyChange, setApiKey } from '../lib/api.js';

/** The API key this tab sends (api.js keeps it in sessionStorage): `[key, setKey]`. */
export default function useApiKey() {
  const [key, setKey] = useState(getApiKey);
  useEffect(() => onApiKeyChange(setKey), []);
  return [key, setApiKey];
}
